variable "name" {
  description = "Agent Space name."
  type        = string
}

variable "agent_role_arn" {
  description = "Read-only role the agent assumes in this account (modules/iam agent role: trusts aidevops.amazonaws.com for this account's Agent Spaces only)."
  type        = string
}
