variable "name" {
  description = "Prefix for every resource name."
  type        = string
}

variable "catalog" {
  description = "The decoded observability catalogue (config/observability.yaml)."
  type        = any
}

variable "image" {
  description = "Image of the worker: the service's image, which also ships the devops-agent-demo binary."
  type        = string
}

variable "cluster_name" {
  type = string
}

variable "cluster_arn" {
  type = string
}

variable "service_name" {
  description = "The demo service whose alarms are investigated."
  type        = string
}

variable "vpc_id" {
  type = string
}

variable "private_subnet_ids" {
  type = list(string)
}

variable "execution_role_arn" {
  description = "ECS task execution role (pulls the image, writes the worker's logs)."
  type        = string
}

variable "kms_key_arn" {
  description = "Customer-managed key of the environment (logs, topics, queues, reports)."
  type        = string
}

variable "log_group_name" {
  description = "The service's log group (read)."
  type        = string
}

variable "log_group_arn" {
  type = string
}

variable "alarm_queue_arn" {
  type = string
}

variable "alarm_queue_url" {
  type = string
}

variable "alarm_dlq_arn" {
  type = string
}

variable "alarm_dlq_url" {
  type = string
}

variable "max_receives" {
  description = "Receives of a failing alarm message before the worker moves it to the DLQ (the queue's redrive policy is the backstop)."
  type        = number
  default     = 3
}

variable "deployment_parameter_path" {
  description = "SSM path of the deployment history (`<path>/latest`)."
  type        = string
}

variable "load_balancer_arn_suffix" {
  type = string
}

variable "target_group_arn_suffix" {
  type = string
}

variable "target_group_arn" {
  type = string
}

variable "report_retention_days" {
  description = "Reports older than this are deleted (noncurrent versions after 30 days)."
  type        = number
  default     = 365
}

variable "webhook_enabled" {
  description = "Forward each alarm to an AWS DevOps Agent generic webhook (off by default)."
  type        = bool
  default     = false
}

variable "webhook_url" {
  description = "The Agent Space's generic webhook URL (https). Its HMAC secret is put into the secret this module creates, by hand (docs/deploy-aws.md)."
  type        = string
  default     = null

  validation {
    condition     = var.webhook_url == null || startswith(coalesce(var.webhook_url, "https://"), "https://")
    error_message = "webhook_url must be an https:// URL."
  }
}
