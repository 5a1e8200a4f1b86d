variable "name" {
  description = "Repository name."
  type        = string
}

variable "keep_images" {
  description = "How many images to keep; older ones expire. Keep enough to roll back."
  type        = number
  default     = 30
}

variable "force_delete" {
  description = "Let `terraform destroy` delete the repository with its images (dev)."
  type        = bool
  default     = true
}
