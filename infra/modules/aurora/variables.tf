variable "name" {
  description = "Cluster identifier and prefix of its instances."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the cluster (two or more AZs)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "Aurora needs subnets in at least two availability zones."
  }
}

variable "security_group_id" {
  description = "Security group of the cluster."
  type        = string
}

variable "engine_version" {
  description = "Aurora PostgreSQL version, e.g. 16.6."
  type        = string

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+$", var.engine_version))
    error_message = "engine_version must look like 16.6."
  }
}

variable "min_capacity" {
  description = "Serverless v2 minimum ACUs per instance."
  type        = number

  validation {
    condition     = var.min_capacity >= 0.5
    error_message = "Serverless v2 capacity starts at 0.5 ACU."
  }
}

variable "max_capacity" {
  description = "Serverless v2 maximum ACUs per instance."
  type        = number

  validation {
    condition     = var.max_capacity >= 1 && var.max_capacity <= 256
    error_message = "max_capacity must be between 1 and 256 ACUs."
  }
}

variable "database_name" {
  description = "The database the shop uses."
  type        = string
}

variable "master_username" {
  description = "Master user, owner of the schema: only the migrate step connects as it (RDS keeps and rotates its password in Secrets Manager)."
  type        = string
}

variable "port" {
  description = "PostgreSQL port."
  type        = number
  default     = 5432
}

variable "kms_key_arn" {
  description = "KMS key of the storage, the master secret and Performance Insights."
  type        = string
}

variable "backup_retention_days" {
  description = "Days of automated backups (point-in-time restore within them)."
  type        = number
  default     = 7

  validation {
    condition     = var.backup_retention_days >= 7 && var.backup_retention_days <= 35
    error_message = "backup_retention_days must be 7 to 35: fewer days of backups lose data a week-end's incident needs."
  }
}

variable "deletion_protection" {
  description = "Refuse to delete the cluster (terraform destroy included): set false, apply, then destroy."
  type        = bool
  default     = true
}

variable "skip_final_snapshot" {
  description = "Destroy without a final snapshot (<name>-final). false keeps the data of a destroyed cluster."
  type        = bool
  default     = false
}

variable "secret_recovery_window_days" {
  description = "Days a deleted app-role secret can still be restored (Secrets Manager allows 7 to 30; 0, deletion at once, is refused here)."
  type        = number
  default     = 7

  validation {
    condition     = var.secret_recovery_window_days >= 7 && var.secret_recovery_window_days <= 30
    error_message = "secret_recovery_window_days must be 7 to 30: a secret deleted by mistake must be recoverable."
  }
}

variable "monitoring_interval" {
  description = "Enhanced Monitoring interval, seconds (0 turns it off)."
  type        = number
  default     = 60

  validation {
    condition     = contains([0, 1, 5, 10, 15, 30, 60], var.monitoring_interval)
    error_message = "monitoring_interval must be one of 0, 1, 5, 10, 15, 30, 60."
  }
}

variable "fis_target_tags" {
  description = "Tags by which the FIS failover template finds the cluster."
  type        = map(string)
}

variable "fis_reader_tags" {
  description = "Tags by which the FIS reader-loss template finds the reader instance."
  type        = map(string)
  default     = {}
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

variable "app_roles" {
  description = "The services' login roles (migration 0004 grants them; the master user only migrates): one Secrets Manager secret each, {\"username\", \"password\"}, the password generated once."
  type        = set(string)
  default     = []

  validation {
    condition     = alltrue([for role in var.app_roles : can(regex("^[a-z_][a-z0-9_]{0,62}$", role))])
    error_message = "app_roles must be lowercase PostgreSQL role names (letters, digits, underscores)."
  }
}
