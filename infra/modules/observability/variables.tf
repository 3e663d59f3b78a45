variable "name" {
  description = "Prefix of the alarms and name of the dashboard."
  type        = string
}

variable "alb_arn_suffix" {
  description = "ARN suffix of the load balancer."
  type        = string
}

variable "target_group_arn_suffixes" {
  description = "Target group ARN suffix per service."
  type        = map(string)
}

variable "proxy_name" {
  description = "Name of the RDS Proxy."
  type        = string
}

variable "cluster_identifier" {
  description = "Identifier of the Aurora cluster."
  type        = string
}

variable "queue_name" {
  description = "Name of the order queue."
  type        = string
}

variable "dlq_name" {
  description = "Name of the dead-letter queue."
  type        = string
}

variable "worker_log_group_name" {
  description = "Log group of the order-worker, whose `order failed:` lines feed the failed-orders metric and alarm; null (no worker deployed): neither."
  type        = string
  default     = null
}

variable "alb_5xx_percent" {
  description = "Share of 5xx answers, percent, above which the customer-impact alarm fires."
  type        = number
  default     = 50

  validation {
    condition     = var.alb_5xx_percent > 0 && var.alb_5xx_percent <= 100
    error_message = "alb_5xx_percent must be in (0, 100]."
  }
}

variable "alb_5xx_evaluation_minutes" {
  description = "Consecutive minutes above the threshold before the alarm fires."
  type        = number
  default     = 2

  validation {
    condition     = var.alb_5xx_evaluation_minutes >= 1 && var.alb_5xx_evaluation_minutes <= 10
    error_message = "alb_5xx_evaluation_minutes must be 1 to 10."
  }
}

variable "queue_age_seconds" {
  description = "Age of the oldest queued order, seconds, that raises the queue-age alarm."
  type        = number
  default     = 300
}

variable "alarm_actions" {
  description = "SNS topics (or other actions) notified when an alarm changes state."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags for the alarms."
  type        = map(string)
  default     = {}
}
