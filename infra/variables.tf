# The two switches ------------------------------------------------------------------------

variable "enable_proxy" {
  description = "true: the services reach Aurora through RDS Proxy (writer and READ_ONLY endpoints) and run the resilient database settings. false: the fragile baseline, straight to the cluster endpoints."
  type        = bool
  default     = true
}

variable "enable_degradation" {
  description = "true: circuit breakers, the DynamoDB catalog copy, the SQS order buffer and the worker. false: none of them (no queue or cache settings, no worker)."
  type        = bool
  default     = true
}

# Where and what ---------------------------------------------------------------------------

variable "name" {
  description = "Prefix of every resource's name; the queues are <name>-orders and <name>-orders-dlq."
  type        = string
  default     = "chaos-shop"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,19}$", var.name))
    error_message = "name must be 2 to 20 lowercase letters, digits or dashes, starting with a letter (it prefixes ALB target group names)."
  }
}

variable "region" {
  description = "AWS region of the whole deployment."
  type        = string
  default     = "eu-west-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as eu-west-1."
  }
}

variable "image_tag" {
  description = "Tag of the three images in ECR (pushed before the full apply, e.g. the git commit). The repositories are immutable: a new build needs a new tag."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag))
    error_message = "image_tag must be a valid Docker tag."
  }
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

# Network and entry ------------------------------------------------------------------------

variable "vpc_cidr" {
  description = "CIDR block of the VPC."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0))
    error_message = "vpc_cidr must be an IPv4 CIDR block."
  }
}

variable "az_count" {
  description = "Availability zones the subnets span (2 or 3)."
  type        = number
  default     = 2

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 3
    error_message = "az_count must be 2 or 3."
  }
}

variable "aws_api_access" {
  description = "How tasks reach the AWS APIs: \"endpoints\" (the default: interface endpoints, about 100 USD a month over two AZs, no internet path; the tasks may reach the endpoints and the S3 and DynamoDB gateway endpoints only) or \"nat\" (asked for: one NAT gateway, about 33 USD a month plus data, and the tasks may reach any HTTPS host)."
  type        = string
  default     = "endpoints"

  validation {
    condition     = contains(["nat", "endpoints"], var.aws_api_access)
    error_message = "aws_api_access must be \"nat\" or \"endpoints\"."
  }
}

variable "certificate_arn" {
  description = "ACM certificate for the ALB: HTTPS on 443, HTTP redirected to it. Required, unless allow_plain_http_for_lab = true (plain HTTP on 80, for a throwaway lab only)."
  type        = string
  default     = null

  validation {
    condition     = var.certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN."
  }

  validation {
    condition     = var.certificate_arn != null || var.allow_plain_http_for_lab
    error_message = "certificate_arn is required: the shop takes orders, so it is served over HTTPS. Set certificate_arn to an ACM certificate of this region, or, for a throwaway lab without one, set allow_plain_http_for_lab = true explicitly."
  }
}

variable "allow_plain_http_for_lab" {
  description = "true: serve plain HTTP on port 80 when there is no certificate_arn. A lab's explicit choice (traffic, order bodies and any token travel in clear); never for a deployment that takes real orders."
  type        = bool
  default     = false
}

variable "access_log_days" {
  description = "Days the ALB access logs are kept in their bucket."
  type        = number
  default     = 365

  validation {
    condition     = var.access_log_days >= 1
    error_message = "access_log_days must be at least 1."
  }
}

variable "order_auth" {
  description = <<-EOT
    Authentication of POST /orders at the ALB (HTTPS only), instead of the services' own API
    keys (set require_api_keys = false with it); null: none at the ALB (the quotas apply
    either way). mode "jwt": every order carries a bearer token (RS256 JWT, e.g. an OAuth
    client-credentials token) that the ALB validates against issuer and jwks_endpoint, and
    the scope if required_scope is set. mode "oidc": browser sign-in with
    authorization_endpoint, token_endpoint, user_info_endpoint, client_id and
    order_auth_client_secret. Requests that fail get 401 from the ALB.
  EOT
  type = object({
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
    condition     = var.order_auth == null || try(contains(["jwt", "oidc"], var.order_auth.mode), false)
    error_message = "order_auth.mode must be \"jwt\" (bearer tokens) or \"oidc\" (browser sign-in)."
  }

  validation {
    condition = var.order_auth == null || try(
      var.order_auth.mode == "jwt" ? var.order_auth.jwks_endpoint != null : alltrue([
        for v in [var.order_auth.authorization_endpoint, var.order_auth.token_endpoint, var.order_auth.user_info_endpoint, var.order_auth.client_id] : v != null
    ]), false)
    error_message = "order_auth: mode jwt needs jwks_endpoint; mode oidc needs authorization_endpoint, token_endpoint, user_info_endpoint and client_id (and order_auth_client_secret)."
  }

  validation {
    condition     = var.order_auth == null || var.certificate_arn != null
    error_message = "order_auth needs certificate_arn: the ALB authenticates on its HTTPS listener only."
  }
}

variable "order_auth_client_secret" {
  description = "OIDC client secret for order_auth mode oidc. The ALB API takes it as a value, so it lands in Terraform's state (keep the state in the encrypted backend)."
  type        = string
  default     = null
  sensitive   = true
}

variable "require_api_keys" {
  description = <<-EOT
    true: POST /orders requires a signed API key, Authorization: Bearer <client>.<signature>
    (shop.clients; 401 without a valid one). Terraform generates the signing secret into
    Secrets Manager (output api_key_secret_arn) and gives it to the orders tasks alone, at
    start, as SHOP_API_KEY_SECRET; an operator issues each client's key with it (docs/aws.md,
    "API keys"). false: any bearer token, or none, is taken. Not together with order_auth: the
    ALB forwards its token in the same Authorization header.
  EOT
  type        = bool
  default     = true

  validation {
    condition     = !(var.require_api_keys && var.order_auth != null)
    error_message = "require_api_keys and order_auth cannot both be on: the ALB forwards order_auth's token as is in the Authorization header, where the orders service would look for an API key and answer 401 to every order. With order_auth, set require_api_keys = false."
  }
}

# Abuse limits: the WAF web ACL on the ALB -------------------------------------------------

variable "waf_order_rate_limit" {
  description = "POST /orders per client address per waf_rate_window_seconds before WAF answers 403."
  type        = number
  default     = 100
}

variable "waf_request_rate_limit" {
  description = "Requests of any kind per client address per waf_rate_window_seconds."
  type        = number
  default     = 2000
}

variable "waf_rate_window_seconds" {
  description = "Window of the WAF rate rules: 60, 120, 300 or 600 seconds."
  type        = number
  default     = 300
}

variable "waf_rate_limit_exempt_cidrs" {
  description = "IPv4 CIDRs the WAF rate rules do not count: the lab's load generator, whose experiments send hundreds of orders a minute from one address. The managed rule groups still apply."
  type        = list(string)
  default     = []
}

variable "domain_name" {
  description = "DNS name pointing at the ALB (you create the record); used in the alb_url output. null: the ALB's own DNS name."
  type        = string
  default     = null
}

# Containers -------------------------------------------------------------------------------

variable "task_cpu" {
  description = "CPU units of every task."
  type        = number
  default     = 256
}

variable "task_memory" {
  description = "Memory of every task, MiB."
  type        = number
  default     = 512
}

variable "cpu_architecture" {
  description = "X86_64 or ARM64: what the images were built for."
  type        = string
  default     = "X86_64"
}

variable "service_min_count" {
  description = "catalog tasks at least: two, so one stopped task is no outage (orders: orders_min_count)."
  type        = number
  default     = 2

  validation {
    condition     = var.service_min_count >= 1
    error_message = "service_min_count must be at least 1."
  }
}

variable "client_orders_per_second" {
  description = "Each client's orders per second in one orders task (SHOP_CLIENT_ORDERS_PER_SECOND; 429 past it). A client is its bearer credential, else its address. 0: no quota."
  type        = number
  default     = 10

  validation {
    condition     = var.client_orders_per_second >= 0
    error_message = "client_orders_per_second must be 0 (no quota) or more."
  }
}

variable "client_orders_burst" {
  description = "How many orders a client may send at once before its quota of orders per second applies (SHOP_CLIENT_ORDERS_BURST)."
  type        = number
  default     = 20

  validation {
    condition     = var.client_orders_burst >= 1
    error_message = "client_orders_burst must be at least 1."
  }
}

variable "orders_min_count" {
  description = "orders tasks at least: a fleet of two or more (any orders task may finish an order another one accepted; fleet-crash and rolling-deploy act on the fleet)."
  type        = number
  default     = 2

  validation {
    condition     = var.orders_min_count >= 1
    error_message = "orders_min_count must be at least 1 (2 or more for a fleet)."
  }
}

variable "service_max_count" {
  description = "Tasks per web service at most."
  type        = number
  default     = 4
}

variable "worker_min_count" {
  description = "order-worker tasks at least."
  type        = number
  default     = 1
}

variable "worker_max_count" {
  description = "order-worker tasks at most."
  type        = number
  default     = 3
}

variable "cpu_target_percent" {
  description = "Average CPU every service is scaled to keep."
  type        = number
  default     = 60
}

variable "worker_backlog_per_task" {
  description = "Queued orders per worker task the worker is scaled to keep."
  type        = number
  default     = 20

  validation {
    condition     = var.worker_backlog_per_task > 0
    error_message = "worker_backlog_per_task must be positive."
  }
}

variable "log_level" {
  description = "SHOP_LOG_LEVEL of every service."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "log_retention_days" {
  description = "Retention of every log group, days."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, ... 365, ...)."
  }
}

# Keeping data -----------------------------------------------------------------------------

variable "deletion_protection" {
  description = "Refuse to delete the Aurora cluster, the load balancer and the two DynamoDB tables, terraform destroy included. To tear a deployment down: set false, apply, then destroy."
  type        = bool
  default     = true
}

variable "backup_retention_days" {
  description = "Days of Aurora automated backups (point-in-time restore within them), 7 to 35."
  type        = number
  default     = 7

  validation {
    condition     = var.backup_retention_days >= 7 && var.backup_retention_days <= 35
    error_message = "backup_retention_days must be 7 to 35."
  }
}

variable "secret_recovery_window_days" {
  description = "Days a deleted app-role secret can still be restored, 7 to 30."
  type        = number
  default     = 7

  validation {
    condition     = var.secret_recovery_window_days >= 7 && var.secret_recovery_window_days <= 30
    error_message = "secret_recovery_window_days must be 7 to 30 (Secrets Manager's 0, deletion at once, is refused)."
  }
}

# Database ---------------------------------------------------------------------------------

variable "aurora_engine_version" {
  description = "Aurora PostgreSQL version."
  type        = string
  default     = "16.6"
}

variable "aurora_min_acu" {
  description = "Serverless v2 minimum capacity per instance, ACUs."
  type        = number
  default     = 0.5
}

variable "aurora_max_acu" {
  description = "Serverless v2 maximum capacity per instance, ACUs."
  type        = number
  default     = 4
}

variable "database_name" {
  description = "The shop's database."
  type        = string
  default     = "shop"
}

variable "database_username" {
  description = "Master user, owner of the schema: only the migrate step connects as it (RDS keeps and rotates its password in Secrets Manager); the services connect as shop_orders and shop_catalog."
  type        = string
  default     = "shop"
}

variable "proxy_borrow_timeout_seconds" {
  description = "RDS Proxy connection borrow timeout: how long a client waits for a database connection before the proxy gives up. Keep it near the services' own budget (a few seconds)."
  type        = number
  default     = 5

  validation {
    condition     = var.proxy_borrow_timeout_seconds >= 1 && var.proxy_borrow_timeout_seconds <= 300
    error_message = "proxy_borrow_timeout_seconds must be 1 to 300."
  }
}

# Degradation path -------------------------------------------------------------------------

variable "queue_visibility_timeout_seconds" {
  description = "Order queue visibility timeout; longer than the worker's processing (it asks for 30 s per receive)."
  type        = number
  default     = 60

  validation {
    condition     = var.queue_visibility_timeout_seconds > 30
    error_message = "queue_visibility_timeout_seconds must exceed the worker's 30 s."
  }
}

variable "max_receive_count" {
  description = "Receives before an order message goes to the dead-letter queue."
  type        = number
  default     = 10
}

# Experiments ------------------------------------------------------------------------------

variable "db_outage_seconds" {
  description = "How long the db-outage experiment keeps the proxy without its target (the reference: 3 minutes)."
  type        = number
  default     = 180

  validation {
    condition     = var.db_outage_seconds >= 10 && var.db_outage_seconds <= 3600
    error_message = "db_outage_seconds must be 10 s to 1 hour."
  }
}

variable "enable_task_fault_injection" {
  description = "A chaos deployment: opt the catalog and orders tasks in to FIS's aws:ecs:task actions (the brownout and aws-slow experiments): enableFaultInjection, pidMode task, the SSM agent sidecar (infra/fis-sidecar, read-only root filesystem) and its activation broker. Off by default: the sidecar shares the task's process namespace and credentials, and SSM can run commands in it. Never in a deployment that takes real orders."
  type        = bool
  default     = false
}

variable "ssm_agent_image" {
  description = "Image of the FIS sidecar; null (the default): the deployment's own build of infra/fis-sidecar, pushed to the fis-sidecar repository with image_tag. A mirror must be pinned by tag or digest, never latest."
  type        = string
  default     = null

  validation {
    condition     = var.ssm_agent_image == null || can(regex("(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})$", var.ssm_agent_image))
    error_message = "ssm_agent_image must name a tag or a digest (repository:tag or repository@sha256:...)."
  }

  validation {
    condition     = var.ssm_agent_image == null || !can(regex(":latest$", var.ssm_agent_image))
    error_message = "ssm_agent_image must not be :latest: a sidecar that can run commands in the task is pinned."
  }
}

variable "brownout_delay_ms" {
  description = "How late every database answer is during the brownout experiment, milliseconds (the local lab's default: 3 s)."
  type        = number
  default     = 3000
}

variable "brownout_seconds" {
  description = "How long the brownout experiment lasts."
  type        = number
  default     = 120
}

variable "fleet_crash_after_seconds" {
  description = "How far into its database outage (db_outage_seconds) the fleet-crash experiment stops every orders task."
  type        = number
  default     = 30

  validation {
    condition     = var.fleet_crash_after_seconds >= 1 && var.fleet_crash_after_seconds < var.db_outage_seconds
    error_message = "fleet_crash_after_seconds must be at least 1 and shorter than db_outage_seconds."
  }
}

variable "aws_slow_delay_ms" {
  description = "How late the orders tasks' DynamoDB and SQS traffic is during the aws-slow experiment, milliseconds."
  type        = number
  default     = 1000
}

variable "aws_slow_seconds" {
  description = "How long the aws-slow experiment lasts."
  type        = number
  default     = 120
}

variable "alb_5xx_percent" {
  description = "Share of 5xx answers, percent, over two minutes that fires the customer-impact alarm and stops any running experiment."
  type        = number
  default     = 50
}

variable "alarm_actions" {
  description = "SNS topic ARNs notified by the alarms."
  type        = list(string)
  default     = []
}
