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

variable "aws_api_access" {
  description = "\"endpoints\": the tasks reach the AWS APIs through the VPC's endpoints only; \"nat\": any HTTPS host."
  type        = string
  default     = "endpoints"

  validation {
    condition     = contains(["nat", "endpoints"], var.aws_api_access)
    error_message = "aws_api_access must be \"nat\" or \"endpoints\"."
  }
}

variable "endpoints_security_group_id" {
  description = "Security group of the interface endpoints (aws_api_access = endpoints)."
  type        = string
  default     = null
}

variable "gateway_prefix_list_ids" {
  description = "Prefix list per gateway endpoint: s3 and dynamodb."
  type        = map(string)
  default     = {}
}

variable "tags" {
  description = "Tags for every security group."
  type        = map(string)
  default     = {}
}
