locals {
  engine_major = split(".", var.engine_version)[0]
}

resource "aws_db_subnet_group" "this" {
  name       = var.name
  subnet_ids = var.subnet_ids

  tags = var.tags
}

resource "aws_rds_cluster_parameter_group" "this" {
  name        = "${var.name}-aurora-postgresql${local.engine_major}"
  family      = "aurora-postgresql${local.engine_major}"
  description = "Chaos Shop: TLS only, slow statements and DDL logged"

  # No plaintext connection, from the proxy or (fragile deployment) from the tasks.
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }

  tags = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_iam_role" "monitoring" {
  name = "${var.name}-rds-monitoring"

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "monitoring.rds.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })

  tags = var.tags
}

resource "aws_iam_role_policy_attachment" "monitoring" {
  role       = aws_iam_role.monitoring.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_rds_cluster" "this" {
  #checkov:skip=CKV2_AWS_8:the cluster keeps its own automated backups (7 days or more, validated) and a final snapshot; an AWS Backup plan is the account's choice, not this module's
  cluster_identifier              = var.name
  engine                          = "aurora-postgresql"
  engine_mode                     = "provisioned"
  engine_version                  = var.engine_version
  database_name                   = var.database_name
  master_username                 = var.master_username
  port                            = var.port
  db_subnet_group_name            = aws_db_subnet_group.this.name
  db_cluster_parameter_group_name = aws_rds_cluster_parameter_group.this.name
  vpc_security_group_ids          = [var.security_group_id]

  # The master password never appears in Terraform: RDS generates it into a Secrets Manager
  # secret encrypted with the shop's key; the proxy and the tasks read it from there.
  manage_master_user_password   = true
  master_user_secret_kms_key_id = var.kms_key_arn

  storage_encrypted                   = true
  kms_key_id                          = var.kms_key_arn
  iam_database_authentication_enabled = true
  enabled_cloudwatch_logs_exports     = ["postgresql"]
  backup_retention_period             = var.backup_retention_days
  copy_tags_to_snapshot               = true
  deletion_protection                 = var.deletion_protection
  skip_final_snapshot                 = var.skip_final_snapshot
  # A second destroy of a cluster of the same name stops here while <name>-final exists: it
  # is never overwritten.
  final_snapshot_identifier = var.skip_final_snapshot ? null : "${var.name}-final"
  apply_immediately         = true

  serverlessv2_scaling_configuration {
    min_capacity = var.min_capacity
    max_capacity = var.max_capacity
  }

  # The tag FIS finds the cluster by (failover template).
  tags = merge(var.tags, var.fis_target_tags)
}

# Two instances, created one after the other so that the first is the writer. The reader
# has promotion tier 1: it is the one Aurora promotes on failover.
resource "aws_rds_cluster_instance" "writer" {
  identifier                            = "${var.name}-1"
  cluster_identifier                    = aws_rds_cluster.this.id
  engine                                = aws_rds_cluster.this.engine
  engine_version                        = aws_rds_cluster.this.engine_version
  instance_class                        = "db.serverless"
  promotion_tier                        = 0
  db_subnet_group_name                  = aws_db_subnet_group.this.name
  publicly_accessible                   = false
  auto_minor_version_upgrade            = true
  monitoring_interval                   = var.monitoring_interval
  monitoring_role_arn                   = aws_iam_role.monitoring.arn
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = var.kms_key_arn
  performance_insights_retention_period = 7
  apply_immediately                     = true

  tags = var.tags
}

resource "aws_rds_cluster_instance" "reader" {
  identifier                            = "${var.name}-2"
  cluster_identifier                    = aws_rds_cluster.this.id
  engine                                = aws_rds_cluster.this.engine
  engine_version                        = aws_rds_cluster.this.engine_version
  instance_class                        = "db.serverless"
  promotion_tier                        = 1
  db_subnet_group_name                  = aws_db_subnet_group.this.name
  publicly_accessible                   = false
  auto_minor_version_upgrade            = true
  monitoring_interval                   = var.monitoring_interval
  monitoring_role_arn                   = aws_iam_role.monitoring.arn
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = var.kms_key_arn
  performance_insights_retention_period = 7
  apply_immediately                     = true

  # The tag FIS finds the reader by (reader-loss template). A tag stays with the instance,
  # not the role: after an odd number of failovers this instance is the writer.
  tags = merge(var.tags, var.fis_reader_tags)

  depends_on = [aws_rds_cluster_instance.writer]
}

# The services' own login roles (least privilege: migration 0004 creates them and grants what
# each needs; the master user only migrates). One secret per role, in the shape RDS Proxy reads
# ({"username", "password"}), encrypted with the shop's key like the master secret. Terraform
# generates the first password with Secrets Manager's generator (GetRandomPassword); the
# migrate task (`python -m shop.migrate`, a one-shot task) sets each role's password to its
# secret's every time it runs, so the database always follows the secret. That first password
# passes through Terraform's state (docs/aws.md, "The passwords": rotate it once after the
# first deploy, and keep the state in the encrypted backend of backend.tf.example).
resource "aws_secretsmanager_secret" "app_role" {
  #checkov:skip=CKV2_AWS_57:no rotation Lambda (its SQL would put the password in clear in Aurora's DDL log); a role's password rotates by a new secret value from Secrets Manager's generator, applied by the migrate task as a SCRAM verifier (docs/aws.md, What rotates)
  for_each = var.app_roles

  name        = "${var.name}/database/${each.key}"
  description = "Chaos Shop: login and password of the database role ${each.key}"
  kms_key_id  = var.kms_key_arn
  # A secret deleted by mistake can be restored within this window.
  recovery_window_in_days = var.secret_recovery_window_days

  tags = var.tags
}

# Letters and digits only: nothing to quote in a URL, a DSN or the ALTER ROLE statement.
data "aws_secretsmanager_random_password" "app_role" {
  for_each = var.app_roles

  password_length     = 40
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret_version" "app_role" {
  for_each = var.app_roles

  secret_id = aws_secretsmanager_secret.app_role[each.key].id
  secret_string = jsonencode({
    username = each.key
    password = data.aws_secretsmanager_random_password.app_role[each.key].random_password
  })

  # The data source draws a new password on every plan: keep the first one.
  lifecycle {
    ignore_changes = [secret_string]
  }
}
