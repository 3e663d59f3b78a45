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
    condition     = alltrue([for k in ["aurora", "aurora_reader", "private_subnets", "orders"] : contains(keys(var.fis_target_tag_values), k)])
    error_message = "fis_target_tag_values needs \"aurora\" (failover), \"aurora_reader\" (reader-loss), \"private_subnets\" (aws-outage) and \"orders\" (fleet-crash, aws-slow) entries."
  }
}

variable "fis_group_tag_key" {
  description = "Tag key of the group of tasks the brownout delays."
  type        = string
}

variable "fis_group_tag_value" {
  description = "Tag value of the tasks the brownout delays (the catalog's and the orders')."
  type        = string
}

variable "dlq_alarm_arn" {
  description = "Dead-letter queue depth alarm: also stops the templates that can lose orders (aws-outage, worker-crash)."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the shop: the aws-outage template may swap network ACLs of its subnets only."
  type        = string
}

variable "instance_arns" {
  description = "ARNs of the Aurora instances (the reader-loss template may reboot these only)."
  type        = list(string)
}

variable "master_secret_arn" {
  description = "The master user's secret, which the credential-rotation template rotates."
  type        = string
}

variable "task_fault_injection" {
  description = "A chaos deployment: the catalog and orders tasks are opted in to FIS's aws:ecs:task actions. The brownout and aws-slow templates, the sidecar's managed-instance role and its activation broker exist only then."
  type        = bool
  default     = false
}

variable "sidecar_services" {
  description = "ECS services whose tasks carry the FIS sidecar (the broker registers their tasks)."
  type        = list(string)
  default     = []
}

variable "brownout_sources" {
  description = "Where the brownout's delay applies: the database endpoints the services dial (domain names, IPv4 addresses or CIDRs)."
  type        = list(string)

  validation {
    condition     = length(var.brownout_sources) > 0
    error_message = "brownout_sources must name at least one endpoint: without sources FIS delays all of a task's traffic."
  }
}

variable "brownout_delay_ms" {
  description = "How late every database answer is during the brownout, milliseconds."
  type        = number
  default     = 3000

  validation {
    condition     = var.brownout_delay_ms >= 1 && var.brownout_delay_ms <= 60000
    error_message = "brownout_delay_ms must be 1 ms to 60 s."
  }
}

variable "brownout_seconds" {
  description = "How long the brownout lasts."
  type        = number
  default     = 120

  validation {
    condition     = var.brownout_seconds >= 10 && var.brownout_seconds <= 3600
    error_message = "brownout_seconds must be 10 s to 1 hour."
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

variable "fleet_crash_after_seconds" {
  description = "How far into the database outage the fleet-crash template stops every orders task."
  type        = number
  default     = 30

  validation {
    condition     = var.fleet_crash_after_seconds >= 1 && var.fleet_crash_after_seconds < var.db_outage_seconds
    error_message = "fleet_crash_after_seconds must be at least 1 and shorter than db_outage_seconds: the tasks must stop while the database is out."
  }
}

variable "aws_slow_delay_ms" {
  description = "How late the orders tasks' SQS traffic is during aws-slow (the database out meanwhile), milliseconds."
  type        = number
  default     = 1000

  validation {
    condition     = var.aws_slow_delay_ms >= 1 && var.aws_slow_delay_ms <= 60000
    error_message = "aws_slow_delay_ms must be 1 ms to 60 s."
  }
}

variable "aws_slow_seconds" {
  description = "How long aws-slow lasts."
  type        = number
  default     = 120

  validation {
    condition     = var.aws_slow_seconds >= 10 && var.aws_slow_seconds <= 3600
    error_message = "aws_slow_seconds must be 10 s to 1 hour."
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

variable "report" {
  description = "Experiment reports: the bucket they go to (encrypted with kms_key_arn), the dashboard whose graphs they show, and how many minutes before and after the experiment; null: no reports."
  type = object({
    bucket         = string
    dashboard_arn  = string
    minutes_before = optional(number, 5)
    minutes_after  = optional(number, 10)
  })
  default = null

  validation {
    condition     = var.report == null || try(var.report.minutes_before >= 1 && var.report.minutes_before <= 30 && var.report.minutes_after >= 1 && var.report.minutes_after <= 30, false)
    error_message = "report.minutes_before and report.minutes_after must be 1 to 30."
  }
}

variable "kms_key_arn" {
  description = "KMS key of the experiment log group, the sidecar's activation parameters and the experiment reports."
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
