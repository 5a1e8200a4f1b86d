variable "name" {
  description = "Prefix for every resource name, e.g. devops-agent-demo-dev."
  type        = string
}

variable "account_id" {
  description = "AWS account id, used to scope the flow-log role's trust."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC."
  type        = string
}

variable "availability_zones" {
  description = "Availability zones, one public and one private subnet in each. An ALB needs at least two."
  type        = list(string)

  validation {
    condition     = length(var.availability_zones) >= 2
    error_message = "An Application Load Balancer needs subnets in at least two availability zones."
  }
}

variable "public_subnet_cidrs" {
  description = "One CIDR per availability zone, in the same order."
  type        = list(string)
}

variable "private_subnet_cidrs" {
  description = "One CIDR per availability zone, in the same order."
  type        = list(string)
}

variable "single_nat_gateway" {
  description = "true: one NAT gateway shared by all AZs (cheaper, dev); false: one per AZ (survives an AZ outage)."
  type        = bool
}

variable "flow_log_group_arn" {
  description = "ARN of the CloudWatch log group that receives the VPC flow logs."
  type        = string
}
