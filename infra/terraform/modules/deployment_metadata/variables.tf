variable "name" {
  description = "Environment name, for descriptions."
  type        = string
}

variable "path" {
  description = "SSM parameter path for deployment records, e.g. /devops-agent-demo/dev/deployments."
  type        = string

  validation {
    condition     = startswith(var.path, "/") && !endswith(var.path, "/")
    error_message = "path must start with / and not end with /."
  }
}
