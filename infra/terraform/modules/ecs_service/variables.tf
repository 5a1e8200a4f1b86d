variable "name" {
  description = "Prefix for every resource name."
  type        = string
}

variable "catalog" {
  description = "The decoded observability catalogue: task size, service, deployment and health check settings are read from it."
  type        = any
}

variable "repository_url" {
  description = "ECR repository URL, without tag."
  type        = string
}

variable "image_tag" {
  description = "Image to run: a git commit SHA (7-40 hex digits, the tag the pipeline pushes) or a digest (sha256:...). Never a moving tag such as latest."
  type        = string

  validation {
    condition     = length(regexall("^([0-9a-f]{7,40}|sha256:[0-9a-f]{64})$", var.image_tag)) > 0
    error_message = "image_tag must be a git SHA (7-40 lowercase hex digits) or an image digest (sha256:<64 hex>); moving tags such as latest are not allowed."
  }
}

variable "vpc_id" {
  type = string
}

variable "private_subnet_ids" {
  type = list(string)
}

variable "alb_security_group_id" {
  type = string
}

variable "target_group_arn" {
  type = string
}

variable "execution_role_arn" {
  type = string
}

variable "task_role_arn" {
  type = string
}

variable "kms_key_arn" {
  description = "Key for ECS Exec sessions and the fault token."
  type        = string
}

variable "log_group_name" {
  description = "Application log group (the catalogue's logs.group)."
  type        = string
}

variable "exec_log_group_name" {
  description = "Log group for ECS Exec session transcripts."
  type        = string
}

variable "parameter_path" {
  description = "SSM path for the app's secrets, e.g. /devops-agent-demo/dev/app."
  type        = string
}

variable "faults_enabled" {
  description = "Enable demo-app's fault-injection endpoints (token-protected). Off by default in AWS."
  type        = bool
  default     = false
}

variable "log_level" {
  type    = string
  default = "info"
}

variable "health_check_grace_period_seconds" {
  description = "Time after a task starts before failed ALB health checks count."
  type        = number
  default     = 30
}

variable "fargate_spot_weight" {
  description = "Share of tasks above the first placed on FARGATE_SPOT (0 = all on-demand)."
  type        = number
  default     = 0
}

variable "max_count" {
  description = "Autoscaling ceiling; the floor is the catalogue's desired_count."
  type        = number
  default     = 4
}

variable "cpu_target_percent" {
  description = "Target-tracking CPU utilisation; below the cpu-high alarm so scaling acts before it fires."
  type        = number
  default     = 60
}

variable "memory_target_percent" {
  description = "Target-tracking memory utilisation; below the memory-high alarm."
  type        = number
  default     = 70
}
