variable "name" {
  description = "Prefix of the repositories' names (<name>/<service>)."
  type        = string
}

variable "repositories" {
  description = "One repository per service image."
  type        = list(string)
}

variable "kms_key_arn" {
  description = "KMS key that encrypts the images."
  type        = string
}

variable "keep_images" {
  description = "How many images each repository keeps."
  type        = number
  default     = 10

  validation {
    condition     = var.keep_images >= 1
    error_message = "keep_images must be at least 1."
  }
}

variable "force_delete" {
  description = "Delete the repositories with their images on terraform destroy. false: a destroy stops at a repository that still holds images (delete them first)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for every repository."
  type        = map(string)
  default     = {}
}
