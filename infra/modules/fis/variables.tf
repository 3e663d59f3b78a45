variable "name" {
  description = "Prefix of the templates, roles, runbook and log group."
  type        = string
}

variable "cluster_arn" {
  description = "ARN of the Aurora cluster."
  type        = string
}

variable "cluster_identifier" {
  description = "Identifier of the Aurora cluster."
  type        = string
}

variable "proxy_name" {
  description = "Name of the RDS Proxy whose target the outage removes."
  type        = string
}

variable "proxy_arn" {
  description = "ARN of the RDS Proxy."
  type        = string
}

variable "proxy_target_group_name" {
  description = "Name of the proxy's target group."
  type        = string
}

variable "proxy_target_group_arn" {
  description = "ARN of the proxy's target group."
  type        = string
}

variable "ecs_cluster_name" {
  description = "Name of the ECS cluster of the services."
  type        = string
}

variable "ecs_cluster_arn" {
  description = "ARN of the ECS cluster."
  type        = string
}

variable "services" {
  description = "Services that get a stop-task template."
  type        = list(string)
}

variable "fis_target_tag_key" {
  description = "Tag key by which the templates find their targets."
  type        = string
}

variable "fis_target_tag_values" {
  description = "Tag value per target: \"aurora\" and one per service."
  type        = map(string)

  validation {
    condition     = contains(keys(var.fis_target_tag_values), "aurora")
    error_message = "fis_target_tag_values needs an \"aurora\" entry (the failover target)."
  }
}

variable "stop_alarm_arn" {
  description = "Customer-impact alarm (ALB 5xx rate) that stops every experiment."
  type        = string
}

variable "db_outage_seconds" {
  description = "How long the proxy stays without its target."
  type        = number
  default     = 180

  validation {
    condition     = var.db_outage_seconds >= 10 && var.db_outage_seconds <= 3600
    error_message = "db_outage_seconds must be 10 s to 1 hour."
  }
}

variable "stop_task_selection" {
  description = "Which tasks of a service the stop-task templates stop: COUNT(n), PERCENT(n) or ALL."
  type        = string
  default     = "COUNT(1)"

  validation {
    condition     = can(regex("^(ALL|COUNT\\([0-9]+\\)|PERCENT\\([0-9]+\\))$", var.stop_task_selection))
    error_message = "stop_task_selection must be ALL, COUNT(n) or PERCENT(n)."
  }
}

variable "kms_key_arn" {
  description = "KMS key of the experiment log group."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the experiment log group, days."
  type        = number
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
