variable "region" {
  description = "AWS region."
  type        = string
  default     = "us-east-1"
}

variable "vpc_cidr" {
  type    = string
  default = "10.0.0.0/16"
}

variable "availability_zones" {
  description = "At least two: an ALB rejects a single availability zone."
  type        = list(string)
  default     = ["us-east-1a", "us-east-1b"]

  validation {
    condition     = length(var.availability_zones) >= 2
    error_message = "An Application Load Balancer needs at least two availability zones."
  }
}

variable "public_subnet_cidrs" {
  type    = list(string)
  default = ["10.0.0.0/24", "10.0.1.0/24"]
}

variable "private_subnet_cidrs" {
  type    = list(string)
  default = ["10.0.10.0/24", "10.0.11.0/24"]
}

variable "single_nat_gateway" {
  description = "One NAT gateway for the whole VPC (dev, cheaper) instead of one per AZ."
  type        = bool
  default     = true
}

variable "certificate_arn" {
  description = "ACM certificate ARN for HTTPS. null: HTTP only (HTTP forwards, never redirects to a missing listener)."
  type        = string
  default     = null
}

variable "image_tag" {
  description = "Git SHA (or sha256 digest) of the image the task definition starts with. The deploy workflow registers later revisions."
  type        = string
}

variable "github_repository" {
  description = "owner/name of the GitHub repository whose main branch may deploy."
  type        = string
}

variable "github_deploy_branch" {
  type    = string
  default = "main"
}

variable "faults_enabled" {
  description = "Turn on demo-app's (token-protected) fault injection in AWS. Off by default; needs certificate_arn, since the token travels in a header."
  type        = bool
  default     = false

  # The x-fault-token header must never cross the internet in clear text.
  validation {
    condition     = !var.faults_enabled || var.certificate_arn != null
    error_message = "faults_enabled needs certificate_arn: without HTTPS the x-fault-token header is sent in clear text."
  }
}

variable "agent_trusted_principal_arns" {
  description = "Who may assume the read-only agent role. Empty: principals of this account that are themselves allowed sts:AssumeRole on it."
  type        = list(string)
  default     = []
}

variable "alarm_emails" {
  description = "Optional e-mail subscribers of the alarm topic."
  type        = list(string)
  default     = []
}

variable "max_count" {
  description = "Autoscaling ceiling (the floor is the catalogue's desired_count)."
  type        = number
  default     = 4
}

variable "fargate_spot_weight" {
  description = "Weight of FARGATE_SPOT in the service's capacity provider strategy (0 = on-demand only)."
  type        = number
  default     = 0
}

variable "devops_agent_webhook_url" {
  description = "Optional: an AWS DevOps Agent generic webhook URL; the investigator then forwards each alarm to it (HMAC-signed). null: off."
  type        = string
  default     = null
}

variable "agent_space_enabled" {
  description = "Create an AWS DevOps Agent Space associated with this account (awscc provider; DevOps Agent regions only). Off by default."
  type        = bool
  default     = false
}
