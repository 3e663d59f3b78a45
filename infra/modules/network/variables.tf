variable "name" {
  description = "Prefix of every resource's name."
  type        = string
}

variable "cidr" {
  description = "CIDR block of the VPC (a /16 to /20; each subnet gets a sixteenth of it)."
  type        = string

  validation {
    condition     = can(cidrhost(var.cidr, 0)) && tonumber(split("/", var.cidr)[1]) <= 20
    error_message = "cidr must be an IPv4 CIDR block of /20 or larger, e.g. 10.40.0.0/16."
  }
}

variable "az_count" {
  description = "How many availability zones the subnets span (Aurora and RDS Proxy need two)."
  type        = number
  default     = 2

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 3
    error_message = "az_count must be 2 or 3: RDS Proxy and Aurora need subnets in at least two AZs."
  }
}

variable "aws_api_access" {
  description = "How tasks in the private subnets reach the AWS APIs: \"endpoints\" (interface endpoints, no internet path at all) or \"nat\" (one NAT gateway: any HTTPS host on the internet)."
  type        = string
  default     = "endpoints"

  validation {
    condition     = contains(["nat", "endpoints"], var.aws_api_access)
    error_message = "aws_api_access must be \"nat\" or \"endpoints\"."
  }
}

variable "ssm_endpoints" {
  description = "Also the SSM endpoints (ssm, ssmmessages, ec2messages): the FIS sidecar's agent talks to them (a chaos deployment)."
  type        = bool
  default     = false
}

variable "kms_key_arn" {
  description = "KMS key that encrypts the flow log group."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the flow log group, days."
  type        = number
}

variable "fis_subnet_tags" {
  description = "Tags of the private subnets by which FIS finds them (the aws-outage template)."
  type        = map(string)
  default     = {}
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
