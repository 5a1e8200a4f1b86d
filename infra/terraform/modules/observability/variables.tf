variable "name" {
  description = "Prefix for every resource name; alarm names are \"<name>-<catalogue alarm name>\"."
  type        = string
}

variable "catalog" {
  description = "The decoded observability catalogue (config/observability.yaml): logs, metric_filters and alarms are read from it."
  type        = any
}

variable "cluster_name" {
  description = "ClusterName dimension for alarms whose catalogue dimensions are `service`."
  type        = string
}

variable "service_name" {
  description = "ServiceName dimension for alarms whose catalogue dimensions are `service`."
  type        = string
}

variable "load_balancer_arn_suffix" {
  description = "LoadBalancer dimension for `target_group` and `load_balancer` alarms."
  type        = string
}

variable "target_group_arn_suffix" {
  description = "TargetGroup dimension for `target_group` alarms."
  type        = string
}

variable "investigation_timeout_seconds" {
  description = "SQS visibility timeout: how long the investigator may work on one alarm before it is redelivered."
  type        = number
  default     = 300
}

variable "max_receive_count" {
  description = "Deliveries before a message moves to the dead-letter queue."
  type        = number
  default     = 5
}

variable "alarm_emails" {
  description = "Optional e-mail addresses subscribed to the alarm topic (each must confirm)."
  type        = list(string)
  default     = []
}
