variable "name" {
  description = "Prefix for every resource name."
  type        = string
}

variable "catalog" {
  description = "The decoded observability catalogue (config/observability.yaml); health_check and service.container_port are read from it."
  type        = any
}

variable "vpc_id" {
  type = string
}

variable "public_subnet_ids" {
  description = "Public subnets, at least two AZs."
  type        = list(string)

  validation {
    condition     = length(var.public_subnet_ids) >= 2
    error_message = "An Application Load Balancer needs subnets in at least two availability zones."
  }
}

variable "certificate_arn" {
  description = "ACM certificate for an HTTPS listener. null: HTTP only, and HTTP forwards to the targets."
  type        = string
  default     = null
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener (TLS 1.3 with 1.2 fallback, no legacy ciphers)."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "deletion_protection" {
  description = "Protect the ALB from deletion. false in dev so that `terraform destroy` works."
  type        = bool
  default     = false
}

variable "deregistration_delay_seconds" {
  description = "Connection draining time; kept below the task's stop timeout so draining finishes before SIGKILL."
  type        = number
  default     = 20
}
