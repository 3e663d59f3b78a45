variable "name" {
  description = "Name of the task: its container, log stream prefix and family suffix."
  type        = string
}

variable "cluster_name" {
  description = "Name of the ECS cluster the task runs in (also the prefix of its roles, family and log group)."
  type        = string
}

variable "image" {
  description = "Container image, repository URL and tag."
  type        = string
}

variable "command" {
  description = "The command the container runs to completion (exit 0: done)."
  type        = list(string)

  validation {
    condition     = length(var.command) > 0
    error_message = "command must name what the one-shot task runs."
  }
}

variable "environment" {
  description = "Environment variables (SHOP_* settings and AWS_*), never secrets: the command reads those itself."
  type        = map(string)
  default     = {}
}

variable "task_secret_arns" {
  description = "Secrets the command reads itself: the task role may GetSecretValue on exactly these."
  type        = list(string)
  default     = []
}

variable "cpu" {
  description = "Task CPU units (Fargate sizes: 256, 512, 1024, ...)."
  type        = number
  default     = 256

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096], var.cpu)
    error_message = "cpu must be a Fargate size: 256, 512, 1024, 2048 or 4096."
  }
}

variable "memory" {
  description = "Task memory, MiB."
  type        = number
  default     = 512
}

variable "cpu_architecture" {
  description = "X86_64 or ARM64: the architecture the image is built for."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "kms_key_arn" {
  description = "KMS key of the log group and of the secrets (decrypted only through Secrets Manager)."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the task's log group, days."
  type        = number
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
