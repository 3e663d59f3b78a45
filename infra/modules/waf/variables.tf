variable "name" {
  description = "Name of the web ACL (and prefix of its metrics, IP set and log group)."
  type        = string
}

variable "resource_arn" {
  description = "ARN of the load balancer the web ACL protects."
  type        = string
}

variable "order_rate_limit" {
  description = "POST /orders... per client address per rate_window_seconds; beyond it WAF answers 403 until the rate falls."
  type        = number
  default     = 100

  validation {
    condition     = var.order_rate_limit >= 10 && var.order_rate_limit <= 2000000000
    error_message = "order_rate_limit must be 10 or more (WAF's minimum)."
  }
}

variable "request_rate_limit" {
  description = "Requests of any kind per client address per rate_window_seconds."
  type        = number
  default     = 2000

  validation {
    condition     = var.request_rate_limit >= 10 && var.request_rate_limit <= 2000000000
    error_message = "request_rate_limit must be 10 or more (WAF's minimum)."
  }
}

variable "rate_window_seconds" {
  description = "Window over which WAF counts a client's requests: 60, 120, 300 or 600."
  type        = number
  default     = 300

  validation {
    condition     = contains([60, 120, 300, 600], var.rate_window_seconds)
    error_message = "rate_window_seconds must be 60, 120, 300 or 600."
  }
}

variable "rate_limit_exempt_cidrs" {
  description = "IPv4 CIDRs the rate rules do not count (the lab's load generator); the managed rule groups still apply to them."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for cidr in var.rate_limit_exempt_cidrs : can(cidrhost(cidr, 0)) && !startswith(cidr, "0.0.0.0/")])
    error_message = "rate_limit_exempt_cidrs must be IPv4 CIDRs, and not 0.0.0.0/n (that would exempt everyone)."
  }
}

variable "kms_key_arn" {
  description = "KMS key of the log group."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the WAF log group, days."
  type        = number
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
