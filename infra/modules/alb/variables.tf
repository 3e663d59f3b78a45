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

variable "authentication" {
  description = "Authenticate these requests at the load balancer before forwarding them to target (a key of routes): mode jwt (bearer token: issuer, jwks_endpoint, optional required_scope) or oidc (browser sign-in: issuer, authorization_endpoint, token_endpoint, user_info_endpoint, client_id, and authentication_client_secret). null: none. Needs certificate_arn (HTTPS)."
  type = object({
    target                 = string
    path_patterns          = list(string)
    methods                = list(string)
    priority               = number
    mode                   = string
    issuer                 = string
    jwks_endpoint          = optional(string)
    required_scope         = optional(string)
    authorization_endpoint = optional(string)
    token_endpoint         = optional(string)
    user_info_endpoint     = optional(string)
    client_id              = optional(string)
  })
  default = null

  validation {
    condition     = var.authentication == null || try(contains(["jwt", "oidc"], var.authentication.mode), false)
    error_message = "authentication.mode must be \"jwt\" or \"oidc\"."
  }
}

variable "authentication_client_secret" {
  description = "OIDC client secret (mode oidc only). The ALB API takes it as a value, so it is in Terraform's state: keep the state encrypted."
  type        = string
  default     = null
  sensitive   = true
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
