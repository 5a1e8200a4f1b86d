variable "region" {
  type    = string
  default = "us-east-1"
}

variable "project" {
  description = "Name prefix for the state bucket, key and roles."
  type        = string
  default     = "devops-agent-demo"
}

variable "state_bucket_name" {
  description = "State bucket name; default <project>-tfstate-<account id> (globally unique)."
  type        = string
  default     = null
}

variable "github_repository" {
  description = "owner/name of the GitHub repository whose workflows run Terraform."
  type        = string

  validation {
    condition     = length(regexall("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository)) > 0
    error_message = "github_repository must be owner/name."
  }
}

variable "apply_environment" {
  description = "GitHub environment whose jobs may assume the apply role."
  type        = string
  default     = "dev"
}
