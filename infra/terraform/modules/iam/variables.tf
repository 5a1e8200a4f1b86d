variable "name" {
  description = "Prefix for every role name."
  type        = string
}

variable "cluster_name" {
  type = string
}

variable "service_name" {
  type = string
}

variable "ecr_repository_arn" {
  type = string
}

variable "log_group_name" {
  description = "Application log group; the agent may read every group under this prefix (app, ECS Exec, flow logs)."
  type        = string
}

variable "log_group_arn" {
  type = string
}

variable "exec_log_group_arn" {
  type = string
}

variable "kms_key_arn" {
  type = string
}

variable "alarm_arn_prefix" {
  description = "ARN prefix of this environment's alarms (arn:...:alarm:<name>-)."
  type        = string
}

variable "alarm_queue_arn" {
  type = string
}

variable "app_parameter_path" {
  description = "SSM path of the app's secrets, e.g. /devops-agent-demo/dev/app."
  type        = string
}

variable "deployment_parameter_path" {
  description = "SSM path of the deployment records, e.g. /devops-agent-demo/dev/deployments."
  type        = string
}

variable "agent_trusted_principal_arns" {
  description = "IAM principals allowed to assume the read-only agent role (the investigator's role, or the managed agent's)."
  type        = list(string)
}

variable "github_repository" {
  description = "owner/name of the GitHub repository allowed to deploy."
  type        = string

  validation {
    condition     = length(regexall("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository)) > 0
    error_message = "github_repository must be owner/name."
  }
}

variable "github_deploy_branch" {
  description = "The only branch whose workflows may assume the deploy role."
  type        = string
  default     = "main"
}
