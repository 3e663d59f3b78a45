variable "name" {
  description = "Service name: container, service and log stream prefix."
  type        = string
}

variable "cluster_name" {
  description = "Name of the ECS cluster (also the prefix of roles, family and log group)."
  type        = string
}

variable "cluster_arn" {
  description = "ARN of the ECS cluster."
  type        = string
}

variable "image" {
  description = "Container image, repository URL and tag."
  type        = string
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
  description = "X86_64 or ARM64: the architecture the images are built for."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "container_port" {
  description = "Port the container listens on (the worker: its health port)."
  type        = number
}

variable "health_check_port" {
  description = "Port of the process's /health, probed from inside the container."
  type        = number
}

variable "health_check_path" {
  description = "Path of the cheap liveness check."
  type        = string
  default     = "/health"
}

variable "command" {
  description = "Container command; null keeps the image's CMD."
  type        = list(string)
  default     = null
}

variable "environment" {
  description = "Environment variables (SHOP_* settings and AWS_*), never secrets."
  type        = map(string)
  default     = {}
}

variable "secrets" {
  description = "Environment variables read from Secrets Manager once, at task start: name -> valueFrom. A value that rotates belongs in task_secret_arns instead."
  type        = map(string)
  default     = {}
}

variable "secret_arns" {
  description = "Secrets the execution role may read (those named in secrets)."
  type        = list(string)
  default     = []
}

variable "task_secret_arns" {
  description = "Secrets the task's containers read themselves at run time (a value that rotates is read again, no restart): the task role may GetSecretValue on exactly these."
  type        = list(string)
  default     = []
}

variable "kms_key_arn" {
  description = "KMS key of the log group and of the secrets (decrypted only through Secrets Manager)."
  type        = string
}

variable "task_policy_json" {
  description = "The task role's least-privilege policy (null: no AWS access)."
  type        = string
  default     = null
}

variable "subnet_ids" {
  description = "Private subnets of the tasks."
  type        = list(string)
}

variable "security_group_ids" {
  description = "Security groups of the tasks."
  type        = list(string)
}

variable "target_group_arn" {
  description = "Load balancer target group; null for a service behind no load balancer (the worker)."
  type        = string
  default     = null
}

variable "desired_count" {
  description = "Tasks at creation (autoscaling owns the count afterwards)."
  type        = number
  default     = 2
}

variable "min_capacity" {
  description = "Autoscaling floor."
  type        = number
  default     = 2
}

variable "max_capacity" {
  description = "Autoscaling ceiling."
  type        = number
  default     = 4

  validation {
    condition     = var.max_capacity >= 1
    error_message = "max_capacity must be at least 1."
  }
}

variable "cpu_target_percent" {
  description = "Average CPU the service is scaled to keep."
  type        = number
  default     = 60

  validation {
    condition     = var.cpu_target_percent > 0 && var.cpu_target_percent <= 100
    error_message = "cpu_target_percent must be in (0, 100]."
  }
}

variable "queue_scaling" {
  description = "Scale on the queue's backlog per task (the worker); null: CPU only."
  type = object({
    queue_name       = string
    backlog_per_task = number
  })
  default = null
}

variable "fault_injection" {
  description = "Opt the task in to FIS's aws:ecs:task actions (a chaos deployment): enableFaultInjection, pidMode task and the SSM agent sidecar (image), which registers the task with the activation the broker leaves under activation_parameter_prefix; null: not opted in."
  type = object({
    image                           = string
    activation_parameter_prefix     = string
    activation_parameter_arn_prefix = string
  })
  default = null
}

variable "log_retention_days" {
  description = "Retention of the service's log group, days."
  type        = number
}

variable "tags" {
  description = "Tags for every resource; the service's tags are propagated to its tasks."
  type        = map(string)
  default     = {}
}
