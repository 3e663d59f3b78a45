variable "name" {
  description = "Prefix of the security groups' names."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the security groups."
  type        = string
}

variable "container_port" {
  description = "Port the services listen on behind the load balancer."
  type        = number
  default     = 8000

  validation {
    condition     = var.container_port > 0 && var.container_port < 65536
    error_message = "container_port must be a TCP port."
  }
}

variable "database_port" {
  description = "PostgreSQL port of the proxy and the cluster."
  type        = number
  default     = 5432
}

variable "https" {
  description = "Whether the load balancer also listens on 443 (a certificate is configured)."
  type        = bool
  default     = false
}

variable "enable_proxy" {
  description = "false: the tasks connect straight to Aurora, which then admits them too."
  type        = bool
}

variable "tags" {
  description = "Tags for every security group."
  type        = map(string)
  default     = {}
}
