variable "name" {
  description = "Name of the key's alias (alias/<name>)."
  type        = string
}

variable "description" {
  description = "What the key protects."
  type        = string
  default     = "Chaos Shop data at rest"
}

variable "deletion_window_in_days" {
  description = "Days a deleted key can still be recovered (every encrypted byte of the shop is lost with the key)."
  type        = number
  default     = 30

  validation {
    condition     = var.deletion_window_in_days >= 7 && var.deletion_window_in_days <= 30
    error_message = "KMS accepts a deletion window of 7 to 30 days."
  }
}

variable "tags" {
  description = "Tags for the key."
  type        = map(string)
  default     = {}
}
