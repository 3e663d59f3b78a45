# Chaos Shop on AWS: catalog, orders and order-worker on ECS Fargate behind an ALB, Aurora
# PostgreSQL behind RDS Proxy, the SQS/DynamoDB degradation path, and the FIS experiments.
#
# Two switches make the fragile and the resilient deployment one variable apart:
#   enable_proxy       = false: the tasks talk straight to the cluster endpoints.
#   enable_degradation = false: no cache table, no queue, no worker.

provider "aws" {
  region = var.region

  default_tags {
    tags = local.tags
  }
}

locals {
  tags = merge({ Project = "chaos-shop", ManagedBy = "terraform" }, var.tags)

  container_port = 8000

  # Every image, where it is built from, and how the load balancer reaches it. The worker has
  # no route: it serves its /health on 8081 to the container's own probe only. Each connects
  # as its own database role (migration 0004's grants). No service migrates: the migrations
  # are a one-shot task of their own (module.migrate), run on deploy.
  services = {
    catalog = {
      dockerfile        = "services/catalog/Dockerfile"
      path_patterns     = ["/products*"]
      priority          = 10
      port              = local.container_port
      needs_degradation = false
      database_role     = "shop_catalog" # reads products
      min_tasks         = var.service_min_count
      max_tasks         = var.service_max_count
    }
    orders = {
      dockerfile        = "services/orders/Dockerfile"
      path_patterns     = ["/orders*"]
      priority          = 20
      port              = local.container_port
      needs_degradation = false
      database_role     = "shop_orders" # orders, and products' stock
      # A fleet: any orders task may finish an order another one accepted (the one-owner
      # design), and fleet-crash / rolling-deploy need more than one task to mean anything.
      min_tasks = var.orders_min_count
      max_tasks = max(var.orders_min_count, var.service_max_count)
    }
    order-worker = {
      dockerfile        = "services/order-worker/Dockerfile"
      path_patterns     = []
      priority          = 0
      port              = 8081 # SHOP_WORKER_HEALTH_PORT's default
      needs_degradation = true
      database_role     = "shop_orders" # the same order transaction as the orders service
      min_tasks         = var.worker_min_count
      max_tasks         = var.worker_max_count
    }
  }

  # The app roles, whether or not the worker is deployed: their secrets and proxy logins exist
  # with every switch.
  database_roles = toset([for s in values(local.services) : s.database_role])

  routes = {
    for name, s in local.services : name => { path_patterns = s.path_patterns, priority = s.priority }
    if length(s.path_patterns) > 0
  }

  # Without degradation there is nothing for the worker to drain: it is not deployed at all.
  deployed_services = {
    for name, s in local.services : name => s if var.enable_degradation || !s.needs_degradation
  }

  # FIS finds its targets by this tag (the cluster, the reader, the private subnets, and each
  # service's tasks).
  fis_tag_key = "chaos-shop:fis-target"
  fis_tag_values = merge(
    {
      aurora          = "${var.name}-aurora"
      aurora_reader   = "${var.name}-aurora-reader"
      private_subnets = "${var.name}-private-subnets"
    },
    { for name in keys(local.services) : name => "${var.name}-${name}" },
  )
  # ... and the brownout finds the services behind the ALB (catalog, orders) by this one.
  fis_group_tag_key   = "chaos-shop:fis-group"
  fis_group_tag_value = "${var.name}-database-clients"
  brownout_services   = toset(keys(local.routes))

  # A chaos deployment: the tasks behind the ALB carry the FIS sidecar (brownout, aws-slow).
  # Off by default: the sidecar shares the task's process namespace and credentials.
  task_fault_injection = var.enable_task_fault_injection
  # Its image: the deployment's own build of infra/fis-sidecar (tools built in, pinned by
  # the deployment's tag), unless a mirror is named.
  fis_sidecar_image = var.ssm_agent_image != null ? var.ssm_agent_image : "${lookup(module.ecr.repository_urls, "fis-sidecar", "no-sidecar-repository")}:${var.image_tag}"
  # Every image the deployment builds, and from where (the sidecar only in a chaos deployment).
  images = merge(
    { for name, s in local.services : name => { dockerfile = s.dockerfile, context = "." } },
    local.task_fault_injection && var.ssm_agent_image == null ? {
      fis-sidecar = { dockerfile = "infra/fis-sidecar/Dockerfile", context = "infra/fis-sidecar" }
    } : {},
  )

  # Database endpoints: the proxy's, or the cluster's in the fragile deployment.
  database_endpoints = {
    proxy  = { writer = module.rds_proxy.endpoint, reader = module.rds_proxy.reader_endpoint }
    direct = { writer = module.aurora.writer_endpoint, reader = module.aurora.reader_endpoint }
  }
  database_endpoint = local.database_endpoints[var.enable_proxy ? "proxy" : "direct"]

  # TLS always (rds.force_ssl on the cluster, require_tls on the proxy), and the server
  # verified: its certificate must chain to a CA of the bundle every image ships
  # (services/*/Dockerfile: the RDS CAs for the cluster, Amazon's root CAs for the proxy's ACM
  # certificate) and name the host. asyncpg reads both parameters from the DSN.
  database_ca_bundle = "/etc/ssl/certs/rds-global-bundle.pem"
  database_tls       = "sslmode=verify-full&sslrootcert=${local.database_ca_bundle}"

  # Database URLs per login: the owner (the migrate task, writer only) and each app role. The
  # password never: the processes read it from Secrets Manager themselves.
  database_urls = merge(
    {
      owner = {
        SHOP_DATABASE_URL = "postgresql://${module.aurora.master_username}@${local.database_endpoint.writer}:5432/${module.aurora.database_name}?${local.database_tls}"
      }
    },
    {
      for role in local.database_roles : role => {
        SHOP_DATABASE_URL        = "postgresql://${role}@${local.database_endpoint.writer}:5432/${module.aurora.database_name}?${local.database_tls}"
        SHOP_DATABASE_READER_URL = "postgresql://${role}@${local.database_endpoint.reader}:5432/${module.aurora.database_name}?${local.database_tls}"
      }
    },
  )

  # What each service connects as: its role's URLs and its role's secret (the ARN, not the
  # value: the processes read the JSON's "password" at start and again after an authentication
  # failure). The schema is the migrate task's: the services wait for it (SHOP_MIGRATE=false).
  database_environment = {
    for name, s in local.services : name => merge(local.database_urls[s.database_role], {
      SHOP_DATABASE_SECRET_ARN = module.aurora.app_role_secret_arns[s.database_role]
      SHOP_MIGRATE             = "false"
    })
  }

  # The migrate task (`python -m shop.migrate`, the orders image, module.migrate): the owner,
  # with the master secret RDS manages and rotates, applies the migrations, then sets each app
  # role's password to its secret's (SHOP_ROLE_SECRETS: role -> secret ARN). Its task role is
  # the only one that may read the master secret.
  migrate = {
    image   = "orders"
    command = ["python", "-m", "shop.migrate", "--timeout", "600"]
  }
  migrate_environment = merge(local.database_urls.owner, {
    SHOP_DATABASE_SECRET_ARN = module.aurora.master_user_secret_arn
    SHOP_ROLE_SECRETS        = jsonencode(module.aurora.app_role_secret_arns)
    SHOP_LOG_LEVEL           = var.log_level
    AWS_REGION               = var.region
    AWS_DEFAULT_REGION       = var.region
  })
  migrate_secret_arns = concat([module.aurora.master_user_secret_arn], [for role in sort(tolist(local.database_roles)) : module.aurora.app_role_secret_arns[role]])

  common_environment = {
    SHOP_ENABLE_PROXY       = tostring(var.enable_proxy)
    SHOP_ENABLE_DEGRADATION = tostring(var.enable_degradation)
    SHOP_LOG_LEVEL          = var.log_level
    AWS_REGION              = var.region
    AWS_DEFAULT_REGION      = var.region
  }

  # The services behind the ALB read the client's address from X-Forwarded-For (an anonymous
  # client's quota is its address's), which uvicorn believes only from FORWARDED_ALLOW_IPS
  # (networks, comma-separated; the images' default, 127.0.0.1, would name every client by
  # the ALB node it came through): the ALB's nodes, whose addresses are the public subnets'.
  forwarded_allow_ips = join(",", module.network.public_subnet_cidrs)

  # What one service alone reads. The catalog and orders services (behind the ALB): whose
  # X-Forwarded-For to believe. The orders service: each client's quota of orders per second,
  # per task (shop.clients.Quota; a client is its API key's or bearer credential's, else its
  # address), under the WAF's fleet-wide rate rule.
  service_environment = {
    catalog = {
      FORWARDED_ALLOW_IPS = local.forwarded_allow_ips
    }
    orders = {
      FORWARDED_ALLOW_IPS           = local.forwarded_allow_ips
      SHOP_CLIENT_ORDERS_PER_SECOND = tostring(var.client_orders_per_second)
      SHOP_CLIENT_ORDERS_BURST      = tostring(var.client_orders_burst)
    }
  }

  # What one service alone is given at start from Secrets Manager (ECS secrets: name ->
  # secret ARN, read by its execution role): the orders service's API key secret, with
  # require_api_keys. Read once, at start, unlike the database passwords: a new signing
  # secret voids every key issued, a reissue that restarts the orders tasks anyway
  # (docs/aws.md, "API keys").
  service_secrets = {
    orders = var.require_api_keys ? { SHOP_API_KEY_SECRET = aws_secretsmanager_secret_version.api_key[0].arn } : {}
  }

  # The degradation path's resources, per service (only with enable_degradation).
  degradation_environment = {
    catalog = {
      SHOP_PRODUCT_CACHE_TABLE = module.messaging.product_cache_table_name
    }
    orders = {
      SHOP_ORDER_QUEUE_URL    = module.messaging.queue_url
      SHOP_ORDER_STATUS_TABLE = module.messaging.order_status_table_name
    }
    order-worker = {
      SHOP_ORDER_QUEUE_URL    = module.messaging.queue_url
      SHOP_ORDER_STATUS_TABLE = module.messaging.order_status_table_name
    }
  }

  # Least privilege per task role: the calls each service makes, on its own resources.
  kms_via_data_services = {
    Effect   = "Allow"
    Action   = ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    Resource = [module.kms.key_arn]
    Condition = {
      StringEquals = {
        "kms:ViaService" = ["sqs.${var.region}.amazonaws.com", "dynamodb.${var.region}.amazonaws.com"]
      }
    }
  }

  task_policies = {
    catalog = jsonencode({
      Version = "2012-10-17"
      Statement = [
        {
          Sid      = "CatalogCopy"
          Effect   = "Allow"
          Action   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:BatchWriteItem", "dynamodb:Scan", "dynamodb:Query", "dynamodb:DescribeTable"]
          Resource = [module.messaging.product_cache_table_arn]
        },
        local.kms_via_data_services,
      ]
    })
    orders = jsonencode({
      Version = "2012-10-17"
      Statement = [
        {
          Sid      = "BufferOrders"
          Effect   = "Allow"
          Action   = ["sqs:SendMessage", "sqs:GetQueueAttributes"]
          Resource = [module.messaging.queue_arn]
        },
        {
          # An order accepted while the database is out is written here first (its store of
          # record) and read back by its id. TransactWriteItems is authorised per item action
          # (PutItem, ConditionCheckItem). Never deleted by the service: the worker decides.
          Sid      = "RecordOrders"
          Effect   = "Allow"
          Action   = ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:ConditionCheckItem", "dynamodb:DescribeTable"]
          Resource = [module.messaging.order_status_table_arn]
        },
        local.kms_via_data_services,
      ]
    })
    order-worker = jsonencode({
      Version = "2012-10-17"
      Statement = [
        {
          Sid    = "DrainOrders"
          Effect = "Allow"
          Action = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"]
          # The DLQ too: unparseable messages go there at once; `redrive` moves them back.
          Resource = [module.messaging.queue_arn, module.messaging.dlq_arn]
        },
        {
          Sid    = "DecideOrders"
          Effect = "Allow"
          # BatchGetItem / BatchWriteItem: a batch's orders and decisions in one call each. SQS
          # authorizes its batch calls (DeleteMessageBatch, ChangeMessageVisibilityBatch) by
          # the single actions above.
          Action   = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:BatchWriteItem", "dynamodb:UpdateItem", "dynamodb:DescribeTable"]
          Resource = [module.messaging.order_status_table_arn]
        },
        {
          # The orders still to decide, shard by shard: the sparse index, not a table scan.
          Sid      = "FindUndecidedOrders"
          Effect   = "Allow"
          Action   = ["dynamodb:Query"]
          Resource = [module.messaging.order_status_undecided_index_arn]
        },
        local.kms_via_data_services,
      ]
    })
  }

  alb_url = format("%s://%s", module.alb.https ? "https" : "http", coalesce(var.domain_name, module.alb.dns_name))
}

module "kms" {
  source = "./modules/kms"

  name = var.name
}

module "network" {
  source = "./modules/network"

  name               = var.name
  cidr               = var.vpc_cidr
  az_count           = var.az_count
  aws_api_access     = var.aws_api_access
  ssm_endpoints      = local.task_fault_injection
  kms_key_arn        = module.kms.key_arn
  log_retention_days = var.log_retention_days
  fis_subnet_tags    = { (local.fis_tag_key) = local.fis_tag_values.private_subnets }
}

module "security_groups" {
  source = "./modules/security_groups"

  name           = var.name
  vpc_id         = module.network.vpc_id
  container_port = local.container_port
  https          = var.certificate_arn != null
  enable_proxy   = var.enable_proxy

  aws_api_access              = var.aws_api_access
  endpoints_security_group_id = module.network.endpoints_security_group_id
  gateway_prefix_list_ids     = module.network.gateway_prefix_list_ids
}

# Every request to the shop, with the client's address: the ALB's access logs (SSE-S3: the
# only encryption ALB log delivery accepts).
module "alb_logs" {
  source = "./modules/log_bucket"

  name            = "${var.name}-alb-logs"
  elb_log_prefix  = "alb"
  expiration_days = var.access_log_days
}

module "alb" {
  source = "./modules/alb"

  name              = var.name
  vpc_id            = module.network.vpc_id
  subnet_ids        = module.network.public_subnet_ids
  security_group_id = module.security_groups.alb_security_group_id
  certificate_arn   = var.certificate_arn
  container_port    = local.container_port
  health_check_path = "/health"
  routes            = local.routes

  deletion_protection = var.deletion_protection
  access_logs_bucket  = module.alb_logs.bucket
  access_logs_prefix  = "alb"

  # POST /orders authenticated at the door, when order_auth says how (before the /orders
  # route, priority 5 < 20).
  authentication = var.order_auth == null ? null : {
    target                 = "orders"
    path_patterns          = local.services.orders.path_patterns
    methods                = ["POST"]
    priority               = 5
    mode                   = var.order_auth.mode
    issuer                 = var.order_auth.issuer
    jwks_endpoint          = var.order_auth.jwks_endpoint
    required_scope         = var.order_auth.required_scope
    authorization_endpoint = var.order_auth.authorization_endpoint
    token_endpoint         = var.order_auth.token_endpoint
    user_info_endpoint     = var.order_auth.user_info_endpoint
    client_id              = var.order_auth.client_id
  }
  authentication_client_secret = var.order_auth_client_secret
}

# Abuse limits at the door: rate limits per client and AWS managed rule groups (modules/waf).
module "waf" {
  source = "./modules/waf"

  name                    = var.name
  resource_arn            = module.alb.arn
  order_rate_limit        = var.waf_order_rate_limit
  request_rate_limit      = var.waf_request_rate_limit
  rate_window_seconds     = var.waf_rate_window_seconds
  rate_limit_exempt_cidrs = var.waf_rate_limit_exempt_cidrs
  kms_key_arn             = module.kms.key_arn
  log_retention_days      = var.log_retention_days
}

module "aurora" {
  source = "./modules/aurora"

  name              = var.name
  subnet_ids        = module.network.private_subnet_ids
  security_group_id = module.security_groups.database_security_group_id
  engine_version    = var.aurora_engine_version
  min_capacity      = var.aurora_min_acu
  max_capacity      = var.aurora_max_acu
  database_name     = var.database_name
  master_username   = var.database_username
  app_roles         = local.database_roles
  kms_key_arn       = module.kms.key_arn
  fis_target_tags   = { (local.fis_tag_key) = local.fis_tag_values.aurora }
  fis_reader_tags   = { (local.fis_tag_key) = local.fis_tag_values.aurora_reader }

  backup_retention_days       = var.backup_retention_days
  deletion_protection         = var.deletion_protection
  skip_final_snapshot         = false
  secret_recovery_window_days = var.secret_recovery_window_days
}

module "rds_proxy" {
  source = "./modules/rds_proxy"

  name                      = var.name
  subnet_ids                = module.network.private_subnet_ids
  security_group_id         = module.security_groups.proxy_security_group_id
  secret_arn                = module.aurora.master_user_secret_arn
  app_secret_arns           = module.aurora.app_role_secret_arns
  kms_key_arn               = module.kms.key_arn
  cluster_identifier        = module.aurora.cluster_identifier
  connection_borrow_timeout = var.proxy_borrow_timeout_seconds
}

module "messaging" {
  source = "./modules/messaging"

  name                       = var.name
  kms_key_arn                = module.kms.key_arn
  visibility_timeout_seconds = var.queue_visibility_timeout_seconds
  max_receive_count          = var.max_receive_count
  deletion_protection        = var.deletion_protection
}

module "ecr" {
  source = "./modules/ecr"

  name         = var.name
  repositories = keys(local.images)
  kms_key_arn  = module.kms.key_arn
}

# Signed API keys (shop.clients): with require_api_keys, POST /orders requires
# `Authorization: Bearer <client>.<signature>`, the HMAC-SHA256 of the client's id under this
# secret, and answers 401 to anything else. The orders tasks alone get it (local.service_secrets);
# an operator reads it to issue a client's key (docs/aws.md, "API keys"). Encrypted with the
# shop's key, drawn by Secrets Manager's generator like the app roles' first passwords, and
# like them it passes through Terraform's state (the offline check serves no write-only
# attributes): keep the state in the encrypted backend of backend.tf.example.
resource "aws_secretsmanager_secret" "api_key" {
  #checkov:skip=CKV2_AWS_57:a new signing secret voids every API key already issued, so it changes only when the operator decides to reissue every key (docs/aws.md, API keys), never on a schedule
  count = var.require_api_keys ? 1 : 0

  name        = "${var.name}/api-key-secret"
  description = "Chaos Shop: the secret that signs the clients' API keys (SHOP_API_KEY_SECRET of the orders service)"
  kms_key_id  = module.kms.key_arn
  # A secret deleted by mistake can be restored within this window (and with it every key).
  recovery_window_in_days = var.secret_recovery_window_days
}

# Letters and digits only: nothing to quote in a shell or an environment variable.
data "aws_secretsmanager_random_password" "api_key" {
  count = var.require_api_keys ? 1 : 0

  password_length     = 64
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret_version" "api_key" {
  count = var.require_api_keys ? 1 : 0

  secret_id     = aws_secretsmanager_secret.api_key[0].id
  secret_string = data.aws_secretsmanager_random_password.api_key[0].random_password

  # The data source draws a new secret on every plan: keep the first one (a new one would
  # void every key issued).
  lifecycle {
    ignore_changes = [secret_string]
  }
}

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

module "service" {
  source   = "./modules/ecs_service"
  for_each = local.deployed_services

  name              = each.key
  cluster_name      = aws_ecs_cluster.this.name
  cluster_arn       = aws_ecs_cluster.this.arn
  image             = "${module.ecr.repository_urls[each.key]}:${var.image_tag}"
  cpu               = var.task_cpu
  memory            = var.task_memory
  cpu_architecture  = var.cpu_architecture
  container_port    = each.value.port
  health_check_port = each.value.port
  environment       = merge(local.database_environment[each.key], local.common_environment, lookup(local.service_environment, each.key, {}), var.enable_degradation ? local.degradation_environment[each.key] : {})
  # The API key secret, orders only: its execution role reads it into the container at start.
  secrets     = lookup(local.service_secrets, each.key, {})
  secret_arns = values(lookup(local.service_secrets, each.key, {}))
  # Each task reads its own role's secret, and no other.
  task_secret_arns   = [module.aurora.app_role_secret_arns[each.value.database_role]]
  kms_key_arn        = module.kms.key_arn
  task_policy_json   = var.enable_degradation ? local.task_policies[each.key] : null
  subnet_ids         = module.network.private_subnet_ids
  security_group_ids = [module.security_groups.tasks_security_group_id]
  target_group_arn   = lookup(module.alb.target_group_arns, each.key, null)
  desired_count      = each.value.min_tasks
  min_capacity       = each.value.min_tasks
  max_capacity       = each.value.max_tasks
  cpu_target_percent = var.cpu_target_percent
  queue_scaling = each.value.needs_degradation ? {
    queue_name       = module.messaging.queue_name
    backlog_per_task = var.worker_backlog_per_task
  } : null
  log_retention_days = var.log_retention_days
  # The brownout's opt-in (the catalog and orders tasks): see modules/ecs_service.
  fault_injection = local.task_fault_injection && contains(local.brownout_services, each.key) ? {
    image                           = local.fis_sidecar_image
    activation_parameter_prefix     = module.fis.sidecar.activation_parameter_prefix
    activation_parameter_arn_prefix = module.fis.sidecar.activation_parameter_arn_prefix
  } : null

  tags = merge(
    { Service = each.key, (local.fis_tag_key) = local.fis_tag_values[each.key] },
    contains(local.brownout_services, each.key) ? { (local.fis_group_tag_key) = local.fis_group_tag_value } : {},
  )
}

# The migrations: a one-shot task, run on deploy (docs/aws.md: `aws ecs run-task` with the
# migrate_run_task output). Its role alone may read the master secret (the schema owner's) and
# the app roles' secrets, whose passwords it sets; no service's role can.
module "migrate" {
  source = "./modules/ecs_task"

  name               = "migrate"
  cluster_name       = aws_ecs_cluster.this.name
  image              = "${module.ecr.repository_urls[local.migrate.image]}:${var.image_tag}"
  command            = local.migrate.command
  environment        = local.migrate_environment
  task_secret_arns   = local.migrate_secret_arns
  cpu                = var.task_cpu
  memory             = var.task_memory
  cpu_architecture   = var.cpu_architecture
  kms_key_arn        = module.kms.key_arn
  log_retention_days = var.log_retention_days
  tags               = { Service = "migrate" }
}

module "observability" {
  source = "./modules/observability"

  name                      = var.name
  alb_arn_suffix            = module.alb.arn_suffix
  target_group_arn_suffixes = module.alb.target_group_arn_suffixes
  proxy_name                = module.rds_proxy.name
  cluster_identifier        = module.aurora.cluster_identifier
  queue_name                = module.messaging.queue_name
  dlq_name                  = module.messaging.dlq_name
  worker_log_group_name     = var.enable_degradation ? module.service["order-worker"].log_group_name : null
  alb_5xx_percent           = var.alb_5xx_percent
  alarm_actions             = var.alarm_actions
}

# The FIS experiment reports (one per experiment, with the dashboard's graphs), encrypted with
# the shop's key.
module "fis_reports" {
  source = "./modules/log_bucket"

  name            = "${var.name}-fis-reports"
  kms_key_arn     = module.kms.key_arn
  expiration_days = var.log_retention_days
}

module "fis" {
  source = "./modules/fis"

  name                      = var.name
  cluster_arn               = module.aurora.cluster_arn
  cluster_identifier        = module.aurora.cluster_identifier
  proxy_name                = module.rds_proxy.name
  proxy_arn                 = module.rds_proxy.arn
  proxy_target_group_name   = module.rds_proxy.target_group_name
  proxy_target_group_arn    = module.rds_proxy.target_group_arn
  ecs_cluster_name          = aws_ecs_cluster.this.name
  ecs_cluster_arn           = aws_ecs_cluster.this.arn
  services                  = keys(local.deployed_services)
  fis_target_tag_key        = local.fis_tag_key
  fis_target_tag_values     = local.fis_tag_values
  fis_group_tag_key         = local.fis_group_tag_key
  fis_group_tag_value       = local.fis_group_tag_value
  stop_alarm_arn            = module.observability.alb_5xx_alarm_arn
  dlq_alarm_arn             = module.observability.dlq_alarm_arn
  db_outage_seconds         = var.db_outage_seconds
  vpc_id                    = module.network.vpc_id
  instance_arns             = module.aurora.instance_arns
  master_secret_arn         = module.aurora.master_user_secret_arn
  task_fault_injection      = local.task_fault_injection
  sidecar_services          = tolist(local.brownout_services)
  brownout_sources          = [local.database_endpoint.writer, local.database_endpoint.reader]
  brownout_delay_ms         = var.brownout_delay_ms
  brownout_seconds          = var.brownout_seconds
  fleet_crash_after_seconds = var.fleet_crash_after_seconds
  aws_slow_delay_ms         = var.aws_slow_delay_ms
  aws_slow_seconds          = var.aws_slow_seconds
  kms_key_arn               = module.kms.key_arn
  log_retention_days        = var.log_retention_days

  # One report per experiment, with the dashboard's graphs around it.
  report = {
    bucket        = module.fis_reports.bucket
    dashboard_arn = module.observability.dashboard_arn
  }
}
