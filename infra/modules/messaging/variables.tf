variable "name" {
  description = "Prefix of the queues' and tables' names (<name>-orders, <name>-orders-dlq, ...)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key of the queues and tables."
  type        = string
}

variable "visibility_timeout_seconds" {
  description = "Order queue visibility timeout; must exceed the worker's processing time (it asks for 30 s per receive)."
  type        = number
  default     = 60

  validation {
    condition     = var.visibility_timeout_seconds > 30 && var.visibility_timeout_seconds <= 43200
    error_message = "visibility_timeout_seconds must exceed the worker's 30 s (SHOP_WORKER_VISIBILITY_TIMEOUT) and be at most 12 hours."
  }
}

variable "message_retention_seconds" {
  description = "How long an undelivered order waits in the queue."
  type        = number
  default     = 345600

  validation {
    condition     = var.message_retention_seconds >= 60 && var.message_retention_seconds <= 1209600
    error_message = "message_retention_seconds must be 60 s to 14 days."
  }
}

variable "max_receive_count" {
  description = "Receives before a message moves to the dead-letter queue."
  type        = number
  default     = 10

  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000
    error_message = "max_receive_count must be 1 to 1000."
  }
}

variable "deletion_protection" {
  description = "Refuse to delete the two tables (order_status holds orders no database has yet): set false, apply, then destroy."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
