data "aws_region" "current" {}

resource "aws_iam_role" "this" {
  name = "${var.name}-rds-proxy"

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "rds.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })

  tags = var.tags
}

locals {
  # Every login the proxy accepts: the master user's (the migrate step) and each app role's.
  secret_arns = concat([var.secret_arn], values(var.app_secret_arns))
}

# The proxy reads the database credentials and nothing else.
resource "aws_iam_role_policy" "this" {
  name = "read-database-secrets"
  role = aws_iam_role.this.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = local.secret_arns
      },
      {
        Effect    = "Allow"
        Action    = ["kms:Decrypt"]
        Resource  = [var.kms_key_arn]
        Condition = { StringEquals = { "kms:ViaService" = "secretsmanager.${data.aws_region.current.region}.amazonaws.com" } }
      },
    ]
  })
}

resource "aws_db_proxy" "this" {
  name                   = var.name
  engine_family          = "POSTGRESQL"
  role_arn               = aws_iam_role.this.arn
  vpc_subnet_ids         = var.subnet_ids
  vpc_security_group_ids = [var.security_group_id]
  # Clients must speak TLS to the proxy (the reference had it off).
  require_tls         = true
  idle_client_timeout = var.idle_client_timeout
  debug_logging       = false

  # The master user: the migrate step only (the services connect as their own roles).
  auth {
    auth_scheme               = "SECRETS"
    secret_arn                = var.secret_arn
    iam_auth                  = "DISABLED"
    client_password_auth_type = "POSTGRES_SCRAM_SHA_256"
    description               = "Aurora master user"
  }

  # One login per app role: the proxy authenticates the client and the database with the
  # secret's username and password.
  dynamic "auth" {
    for_each = var.app_secret_arns
    content {
      auth_scheme               = "SECRETS"
      secret_arn                = auth.value
      iam_auth                  = "DISABLED"
      client_password_auth_type = "POSTGRES_SCRAM_SHA_256"
      description               = "App role ${auth.key}"
    }
  }

  tags = var.tags
}

resource "aws_db_proxy_default_target_group" "this" {
  db_proxy_name = aws_db_proxy.this.name

  connection_pool_config {
    # How long a client waits for a database connection when the pool is exhausted or the
    # target is failing over. The services give up after their own few-second budget, so a
    # longer wait here only piles up abandoned requests inside the proxy.
    connection_borrow_timeout    = var.connection_borrow_timeout
    max_connections_percent      = var.max_connections_percent
    max_idle_connections_percent = var.max_idle_connections_percent
  }
}

resource "aws_db_proxy_target" "this" {
  db_proxy_name         = aws_db_proxy.this.name
  target_group_name     = aws_db_proxy_default_target_group.this.name
  db_cluster_identifier = var.cluster_identifier
}

# The proxy's default endpoint follows the writer; this one spreads reads over the readers.
resource "aws_db_proxy_endpoint" "reader" {
  db_proxy_name          = aws_db_proxy.this.name
  db_proxy_endpoint_name = "${var.name}-reader"
  vpc_subnet_ids         = var.subnet_ids
  vpc_security_group_ids = [var.security_group_id]
  target_role            = "READ_ONLY"

  tags = var.tags
}
