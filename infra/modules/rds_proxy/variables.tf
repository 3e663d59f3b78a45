variable "name" {
  description = "Name of the proxy."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the proxy: the database's own, so one subnet fault hits both."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "RDS Proxy needs subnets in at least two availability zones."
  }
}

variable "security_group_id" {
  description = "Security group of the proxy and its reader endpoint."
  type        = string
}

variable "secret_arn" {
  description = "Secrets Manager secret with the master user's username and password."
  type        = string
}

variable "app_secret_arns" {
  description = "Per app role: the Secrets Manager secret with its username and password (one auth block each)."
  type        = map(string)
  default     = {}
}

variable "kms_key_arn" {
  description = "KMS key that encrypts the secrets."
  type        = string
}

variable "cluster_identifier" {
  description = "Aurora cluster the proxy fronts."
  type        = string
}

variable "connection_borrow_timeout" {
  description = "Seconds a client waits for a pooled database connection before the proxy answers with an error."
  type        = number
  default     = 5

  validation {
    condition     = var.connection_borrow_timeout >= 1 && var.connection_borrow_timeout <= 300
    error_message = "connection_borrow_timeout must be 1 to 300 seconds."
  }
}

variable "idle_client_timeout" {
  description = "Seconds before the proxy closes an idle client connection (the services' pools recycle theirs after 60 s)."
  type        = number
  default     = 1800

  validation {
    condition     = var.idle_client_timeout >= 1 && var.idle_client_timeout <= 28800
    error_message = "idle_client_timeout must be 1 to 28800 seconds."
  }
}

variable "max_connections_percent" {
  description = "Share of the database's max_connections the proxy may open."
  type        = number
  default     = 90

  validation {
    condition     = var.max_connections_percent >= 1 && var.max_connections_percent <= 100
    error_message = "max_connections_percent must be 1 to 100."
  }
}

variable "max_idle_connections_percent" {
  description = "Share of the database's max_connections the proxy keeps open while idle."
  type        = number
  default     = 50

  validation {
    condition     = var.max_idle_connections_percent >= 0 && var.max_idle_connections_percent <= 100
    error_message = "max_idle_connections_percent must be 0 to 100."
  }
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
