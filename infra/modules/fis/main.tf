data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.region
  # FIS runs the automation for the outage plus the restore's own bounded wait.
  outage_max_minutes = ceil(var.db_outage_seconds / 60) + 15
}

resource "aws_cloudwatch_log_group" "this" {
  name              = "/${var.name}/fis"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn

  tags = var.tags
}

# The outage runbook (see db-outage.yaml): remove the proxy's target, hold, restore.
resource "aws_ssm_document" "db_outage" {
  name            = "${var.name}-db-outage"
  document_type   = "Automation"
  document_format = "YAML"
  content         = file("${path.module}/db-outage.yaml")

  tags = var.tags
}

# Role of the automation: this proxy's target, nothing else.
resource "aws_iam_role" "automation" {
  name = "${var.name}-fis-db-outage-automation"

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ssm.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  })

  tags = var.tags
}

resource "aws_iam_role_policy" "automation" {
  name = "proxy-target-only"
  role = aws_iam_role.automation.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid    = "RemoveAndRestoreTheTarget"
        Effect = "Allow"
        Action = [
          "rds:DeregisterDBProxyTargets",
          "rds:RegisterDBProxyTargets",
          "rds:DescribeDBProxyTargets",
        ]
        Resource = [var.proxy_arn, var.proxy_target_group_arn, var.cluster_arn]
      },
      {
        Sid      = "SeeTheCluster"
        Effect   = "Allow"
        Action   = ["rds:DescribeDBClusters", "rds:DescribeDBInstances"]
        Resource = [var.cluster_arn, "arn:${local.partition}:rds:${local.region}:${local.account_id}:db:${var.cluster_identifier}-*"]
      },
    ]
  })
}

# Role of FIS: the three kinds of fault of this shop, on this shop's resources.
resource "aws_iam_role" "fis" {
  name = "${var.name}-fis"

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "fis.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  })

  tags = var.tags
}

resource "aws_iam_role_policy" "fis" {
  #checkov:skip=CKV_AWS_290:tag:GetResources, ecs:ListTasks and the log-delivery calls FIS makes have no resource-level permissions; the writes are scoped to this shop's cluster, tasks, runbook and log group
  #checkov:skip=CKV_AWS_355:same: only actions without resource-level permissions use "*"
  name = "chaos-shop-faults"
  role = aws_iam_role.fis.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "FailOverTheCluster"
        Effect   = "Allow"
        Action   = ["rds:FailoverDBCluster", "rds:DescribeDBClusters"]
        Resource = [var.cluster_arn]
      },
      {
        Sid      = "StopTheShopsTasks"
        Effect   = "Allow"
        Action   = ["ecs:StopTask", "ecs:DescribeTasks"]
        Resource = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:task/${var.ecs_cluster_name}/*"]
      },
      {
        Sid       = "ListTheShopsTasks"
        Effect    = "Allow"
        Action    = ["ecs:ListTasks"]
        Resource  = ["*"]
        Condition = { ArnEquals = { "ecs:cluster" = var.ecs_cluster_arn } }
      },
      {
        Sid      = "FindTargetsByTag"
        Effect   = "Allow"
        Action   = ["tag:GetResources"]
        Resource = ["*"]
      },
      {
        Sid      = "RunTheOutageRunbook"
        Effect   = "Allow"
        Action   = ["ssm:StartAutomationExecution"]
        Resource = ["arn:${local.partition}:ssm:${local.region}:${local.account_id}:automation-definition/${aws_ssm_document.db_outage.name}:*"]
      },
      {
        Sid      = "FollowAndCancelTheRunbook"
        Effect   = "Allow"
        Action   = ["ssm:GetAutomationExecution", "ssm:StopAutomationExecution"]
        Resource = ["arn:${local.partition}:ssm:${local.region}:${local.account_id}:automation-execution/*"]
      },
      {
        Sid      = "HandTheRunbookItsRole"
        Effect   = "Allow"
        Action   = ["iam:PassRole"]
        Resource = [aws_iam_role.automation.arn]
      },
      {
        Sid    = "WriteExperimentLogs"
        Effect = "Allow"
        Action = [
          "logs:CreateLogDelivery",
          "logs:PutResourcePolicy",
          "logs:DescribeResourcePolicies",
          "logs:DescribeLogGroups",
        ]
        Resource = ["*"]
      },
    ]
  })
}

# 1. Aurora writer failover: the reader (promotion tier 1) becomes the writer.
resource "aws_fis_experiment_template" "failover" {
  description = "${var.name}: force an Aurora writer failover"
  role_arn    = aws_iam_role.fis.arn

  action {
    name      = "failover-writer"
    action_id = "aws:rds:failover-db-cluster"

    target {
      key   = "Clusters"
      value = "aurora-cluster"
    }
  }

  target {
    name           = "aurora-cluster"
    resource_type  = "aws:rds:cluster"
    selection_mode = "ALL"

    resource_tag {
      key   = var.fis_target_tag_key
      value = var.fis_target_tag_values.aurora
    }
  }

  stop_condition {
    source = "aws:cloudwatch:alarm"
    value  = var.stop_alarm_arn
  }

  experiment_options {
    account_targeting            = "single-account"
    empty_target_resolution_mode = "fail"
  }

  log_configuration {
    log_schema_version = 2

    cloudwatch_logs_configuration {
      log_group_arn = "${aws_cloudwatch_log_group.this.arn}:*"
    }
  }

  tags = merge(var.tags, { Name = "${var.name}-failover" })
}

# 2. Full database outage: the proxy loses its target for a while (SSM Automation).
resource "aws_fis_experiment_template" "db_outage" {
  description = "${var.name}: deregister Aurora from RDS Proxy for ${var.db_outage_seconds}s, then restore"
  role_arn    = aws_iam_role.fis.arn

  action {
    name      = "remove-proxy-target"
    action_id = "aws:ssm:start-automation-execution"

    parameter {
      key   = "documentArn"
      value = aws_ssm_document.db_outage.arn
    }

    parameter {
      key = "documentParameters"
      value = jsonencode({
        AutomationAssumeRole = aws_iam_role.automation.arn
        DBProxyName          = var.proxy_name
        TargetGroupName      = var.proxy_target_group_name
        DBClusterIdentifier  = var.cluster_identifier
        OutageDuration       = "PT${var.db_outage_seconds}S"
      })
    }

    parameter {
      key   = "maxDuration"
      value = "PT${local.outage_max_minutes}M"
    }
  }

  stop_condition {
    source = "aws:cloudwatch:alarm"
    value  = var.stop_alarm_arn
  }

  experiment_options {
    account_targeting            = "single-account"
    empty_target_resolution_mode = "fail"
  }

  log_configuration {
    log_schema_version = 2

    cloudwatch_logs_configuration {
      log_group_arn = "${aws_cloudwatch_log_group.this.arn}:*"
    }
  }

  tags = merge(var.tags, { Name = "${var.name}-db-outage" })
}

# 3. One task of a service stopped (ECS starts a replacement).
resource "aws_fis_experiment_template" "stop_task" {
  for_each = toset(var.services)

  description = "${var.name}: stop ${var.stop_task_selection} task(s) of ${each.key}"
  role_arn    = aws_iam_role.fis.arn

  action {
    name      = "stop-${each.key}-task"
    action_id = "aws:ecs:stop-task"

    target {
      key   = "Tasks"
      value = "${each.key}-tasks"
    }
  }

  target {
    name           = "${each.key}-tasks"
    resource_type  = "aws:ecs:task"
    selection_mode = var.stop_task_selection

    resource_tag {
      key   = var.fis_target_tag_key
      value = var.fis_target_tag_values[each.key]
    }
  }

  stop_condition {
    source = "aws:cloudwatch:alarm"
    value  = var.stop_alarm_arn
  }

  experiment_options {
    account_targeting            = "single-account"
    empty_target_resolution_mode = "fail"
  }

  log_configuration {
    log_schema_version = 2

    cloudwatch_logs_configuration {
      log_group_arn = "${aws_cloudwatch_log_group.this.arn}:*"
    }
  }

  tags = merge(var.tags, { Name = "${var.name}-stop-${each.key}-task" })
}
