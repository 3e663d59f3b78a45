variable "name" {
  description = "Prefix of the bucket's name (<name>-<account>-<region>, globally unique)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,33}$", var.name))
    error_message = "name must be 2 to 34 lowercase letters, digits or dashes (the bucket name adds the account and the region, 63 characters at most)."
  }
}

variable "kms_key_arn" {
  description = "KMS key of the objects (SSE-KMS); null: SSE-S3, the only encryption ALB access-log delivery accepts."
  type        = string
  default     = null
}

variable "elb_log_prefix" {
  description = "Prefix under which the region's load balancer log delivery may write (an ALB access-log bucket); null: no one but the account's own principals writes."
  type        = string
  default     = null
}

variable "expiration_days" {
  description = "Days an object is kept."
  type        = number
  default     = 365

  validation {
    condition     = var.expiration_days >= 1
    error_message = "expiration_days must be at least 1."
  }
}

variable "noncurrent_expiration_days" {
  description = "Days an overwritten or deleted object version is kept."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_expiration_days >= 1
    error_message = "noncurrent_expiration_days must be at least 1."
  }
}

variable "tags" {
  description = "Tags for the bucket."
  type        = map(string)
  default     = {}
}
