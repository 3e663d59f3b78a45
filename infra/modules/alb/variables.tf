variable "name" {
  description = "Name of the load balancer and prefix of its target groups (at most 20 characters)."
  type        = string

  validation {
    condition     = length(var.name) <= 20
    error_message = "name must be at most 20 characters: target group names add a service suffix and AWS allows 32."
  }
}

variable "vpc_id" {
  description = "VPC of the target groups."
  type        = string
}

variable "subnet_ids" {
  description = "Public subnets of the load balancer, in two or more AZs."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "An application load balancer needs subnets in at least two availability zones."
  }
}

variable "security_group_id" {
  description = "Security group of the load balancer."
  type        = string
}

variable "certificate_arn" {
  description = "ACM certificate for HTTPS (HTTP then redirects to it); null serves HTTP only, a lab's choice the root module makes explicit."
  type        = string
  default     = null
}

variable "deletion_protection" {
  description = "Refuse to delete the load balancer (terraform destroy included)."
  type        = bool
  default     = true
}

variable "access_logs_bucket" {
  description = "S3 bucket of the access logs (modules/log_bucket with elb_log_prefix = access_logs_prefix)."
  type        = string
}

variable "access_logs_prefix" {
  description = "Prefix of the access logs in their bucket."
  type        = string
  default     = "alb"
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "container_port" {
  description = "Port of the targets."
  type        = number
  default     = 8000
}

variable "health_check_path" {
  description = "Path the target groups probe."
  type        = string
  default     = "/health"
}

variable "routes" {
  description = "One target group and listener rule per service: its path patterns and the rule's priority."
  type = map(object({
    path_patterns = list(string)
    priority      = number
  }))

  validation {
    condition     = length(distinct([for r in values(var.routes) : r.priority])) == length(var.routes)
    error_message = "Every route needs a priority of its own."
  }
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
