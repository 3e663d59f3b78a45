data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.region
  # FIS runs the automation for the outage plus the restore's own bounded wait.
  outage_max_minutes = ceil(var.db_outage_seconds / 60) + 15
  vpc_arn            = "arn:${local.partition}:ec2:${local.region}:${local.account_id}:vpc/${var.vpc_id}"
  # The worker-crash template exists where the worker does (enable_degradation).
  has_worker = contains(var.services, "order-worker")
  # aws-slow delays what the orders tasks send to DynamoDB (FIS's keyword for the region's
  # endpoint) and to SQS (its regional endpoint's name, resolved when the action starts).
  aws_slow_sources = ["DYNAMODB", "sqs.${local.region}.${data.aws_partition.current.dns_suffix}"]
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

# The rotation runbook (see credential-rotation.yaml): RotateSecret on the master secret, wait.
resource "aws_ssm_document" "credential_rotation" {
  name            = "${var.name}-credential-rotation"
  document_type   = "Automation"
  document_format = "YAML"
  content         = file("${path.module}/credential-rotation.yaml")

  tags = var.tags
}

# Role of the rotation runbook: this one secret, nothing else.
resource "aws_iam_role" "rotation" {
  name = "${var.name}-fis-rotation-automation"

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

resource "aws_iam_role_policy" "rotation" {
  name = "master-secret-only"
  role = aws_iam_role.rotation.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid      = "RotateTheMasterSecret"
      Effect   = "Allow"
      Action   = ["secretsmanager:RotateSecret", "secretsmanager:DescribeSecret"]
      Resource = [var.master_secret_arn]
    }]
  })
}

# Role of the tasks registered as SSM managed instances by the FIS sidecar (brownout): what
# the SSM agent needs, and removing its own registration when the task stops.
resource "aws_iam_role" "managed_instance" {
  count = var.task_fault_injection ? 1 : 0

  name = "${var.name}-fis-ecs-managed-instance"

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

resource "aws_iam_role_policy_attachment" "managed_instance" {
  count = var.task_fault_injection ? 1 : 0

  role       = aws_iam_role.managed_instance[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_role_policy" "managed_instance" {
  #checkov:skip=CKV_AWS_290:ssm:DeleteActivation has no resource-level permissions; the instance itself is scoped to this account's managed instances
  #checkov:skip=CKV_AWS_355:same: "*" only for ssm:DeleteActivation
  count = var.task_fault_injection ? 1 : 0

  name = "remove-own-registration"
  role = aws_iam_role.managed_instance[0].id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "DeleteTheActivation"
        Effect   = "Allow"
        Action   = ["ssm:DeleteActivation"]
        Resource = ["*"]
      },
      {
        Sid      = "DeregisterTheTask"
        Effect   = "Allow"
        Action   = ["ssm:DeregisterManagedInstance"]
        Resource = ["arn:${local.partition}:ssm:${local.region}:${local.account_id}:managed-instance/*"]
      },
    ]
  })
}

# Role of FIS: the kinds of fault of this shop, on this shop's resources.
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
  #checkov:skip=CKV_AWS_290:tag:GetResources, ecs:ListTasks, ssm:ListCommands/CancelCommand, the EC2 describes and the log-delivery calls FIS makes have no resource-level permissions; the writes are scoped to this shop's cluster, tasks, reader, VPC, runbooks and log group
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
        Sid    = "RunTheRunbooks"
        Effect = "Allow"
        Action = ["ssm:StartAutomationExecution"]
        Resource = [
          "arn:${local.partition}:ssm:${local.region}:${local.account_id}:automation-definition/${aws_ssm_document.db_outage.name}:*",
          "arn:${local.partition}:ssm:${local.region}:${local.account_id}:automation-definition/${aws_ssm_document.credential_rotation.name}:*",
        ]
      },
      {
        Sid      = "FollowAndCancelTheRunbook"
        Effect   = "Allow"
        Action   = ["ssm:GetAutomationExecution", "ssm:StopAutomationExecution"]
        Resource = ["arn:${local.partition}:ssm:${local.region}:${local.account_id}:automation-execution/*"]
      },
      {
        Sid      = "HandTheRunbooksTheirRoles"
        Effect   = "Allow"
        Action   = ["iam:PassRole"]
        Resource = [aws_iam_role.automation.arn, aws_iam_role.rotation.arn]
      },
      {
        Sid      = "RebootTheReader"
        Effect   = "Allow"
        Action   = ["rds:RebootDBInstance", "rds:DescribeDBInstances"]
        Resource = var.instance_arns
      },
      # Brownout: FIS sends its latency document (AWSFIS-Run-*) to the tasks' SSM sidecars.
      {
        Sid    = "DelayTheTasksNetwork"
        Effect = "Allow"
        Action = ["ssm:SendCommand"]
        Resource = [
          "arn:${local.partition}:ssm:${local.region}::document/AWSFIS-Run-*",
          "arn:${local.partition}:ssm:${local.region}:${local.account_id}:managed-instance/*",
        ]
      },
      {
        Sid      = "FollowAndCancelTheCommands"
        Effect   = "Allow"
        Action   = ["ssm:ListCommands", "ssm:CancelCommand"]
        Resource = ["*"]
      },
      # AWS outage: FIS swaps the subnets' network ACL for a copy that denies DynamoDB, then
      # puts the original back and deletes its copy (tagged managedByFIS).
      {
        Sid      = "CreateTheDenyingAclInThisVpc"
        Effect   = "Allow"
        Action   = ["ec2:CreateNetworkAcl"]
        Resource = [local.vpc_arn]
      },
      {
        Sid       = "CreateOnlyFisTaggedAcls"
        Effect    = "Allow"
        Action    = ["ec2:CreateNetworkAcl"]
        Resource  = ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:network-acl/*"]
        Condition = { StringEquals = { "aws:RequestTag/managedByFIS" = "true" } }
      },
      {
        Sid       = "TagTheAclItCreates"
        Effect    = "Allow"
        Action    = ["ec2:CreateTags"]
        Resource  = ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:network-acl/*"]
        Condition = { StringEquals = { "ec2:CreateAction" = "CreateNetworkAcl" } }
      },
      {
        Sid       = "EditAndDeleteOnlyItsAcls"
        Effect    = "Allow"
        Action    = ["ec2:CreateNetworkAclEntry", "ec2:DeleteNetworkAcl"]
        Resource  = ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:network-acl/*"]
        Condition = { StringEquals = { "ec2:ResourceTag/managedByFIS" = "true" } }
      },
      {
        Sid    = "SwapAclsOfThisVpcsSubnets"
        Effect = "Allow"
        Action = ["ec2:ReplaceNetworkAclAssociation"]
        Resource = [
          "arn:${local.partition}:ec2:${local.region}:${local.account_id}:subnet/*",
          "arn:${local.partition}:ec2:${local.region}:${local.account_id}:network-acl/*",
        ]
        Condition = { ArnEquals = { "ec2:Vpc" = local.vpc_arn } }
      },
      {
        Sid      = "ReadTheNetwork"
        Effect   = "Allow"
        Action   = ["ec2:DescribeNetworkAcls", "ec2:DescribeSubnets", "ec2:DescribeVpcs", "ec2:DescribeManagedPrefixLists"]
        Resource = ["*"]
      },
      {
        Sid      = "ReadTheDynamoDbPrefixList"
        Effect   = "Allow"
        Action   = ["ec2:GetManagedPrefixListEntries"]
        Resource = ["arn:${local.partition}:ec2:${local.region}:aws:prefix-list/*"]
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

# 4. Brownout: every database answer late. aws:ecs:task-network-latency delays a task's egress
# (all of it unless scoped): `sources` scopes it to the database endpoints the services dial
# (the proxy's, or the cluster's without the proxy), so answers from the AWS APIs, the ALB's
# health checks and the interface endpoints are not delayed. FIS resolves those names when
# the action starts: an address the name moves to later (a failover) is not delayed.
# Fargate: the tasks opt in (enableFaultInjection, pidMode task, the SSM sidecar; see
# modules/ecs_service) and FIS goes through the ECS fault injection endpoints.
resource "aws_fis_experiment_template" "brownout" {
  count = var.task_fault_injection ? 1 : 0

  description = "${var.name}: delay the database's answers to the catalog and orders tasks by ${var.brownout_delay_ms} ms for ${var.brownout_seconds}s"
  role_arn    = aws_iam_role.fis.arn

  action {
    name      = "delay-database-answers"
    action_id = "aws:ecs:task-network-latency"

    parameter {
      key   = "duration"
      value = "PT${var.brownout_seconds}S"
    }

    parameter {
      key   = "delayMilliseconds"
      value = tostring(var.brownout_delay_ms)
    }

    parameter {
      key   = "jitterMilliseconds"
      value = "0"
    }

    parameter {
      key   = "flowsPercent"
      value = "100"
    }

    parameter {
      key   = "sources"
      value = join(",", var.brownout_sources)
    }

    parameter {
      key   = "useEcsFaultInjectionEndpoints"
      value = "true"
    }

    target {
      key   = "Tasks"
      value = "database-clients"
    }
  }

  target {
    name           = "database-clients"
    resource_type  = "aws:ecs:task"
    selection_mode = "ALL"

    resource_tag {
      key   = var.fis_group_tag_key
      value = var.fis_group_tag_value
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

  tags = merge(var.tags, { Name = "${var.name}-brownout" })
}

# 5. Credential rotation under traffic: the master secret rotated now (SSM Automation).
resource "aws_fis_experiment_template" "credential_rotation" {
  description = "${var.name}: rotate the Aurora master user's secret now and wait for the rotation"
  role_arn    = aws_iam_role.fis.arn

  action {
    name      = "rotate-master-secret"
    action_id = "aws:ssm:start-automation-execution"

    parameter {
      key   = "documentArn"
      value = aws_ssm_document.credential_rotation.arn
    }

    parameter {
      key = "documentParameters"
      value = jsonencode({
        AutomationAssumeRole = aws_iam_role.rotation.arn
        SecretId             = var.master_secret_arn
      })
    }

    parameter {
      key   = "maxDuration"
      value = "PT15M"
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

  tags = merge(var.tags, { Name = "${var.name}-credential-rotation" })
}

# 6. AWS outage while the database is out: the db-outage runbook and a DynamoDB cut, in
# parallel, for the same time.
# The scoping lesson: a fault must cut the path it claims to cut, and only that. The tasks,
# RDS Proxy, Aurora and (with aws_api_access = "endpoints") the interface endpoints share the
# private subnets, so scope "all" on them would cut the database and the ALB's way to the
# tasks too: that is a network partition, not an AWS outage. Scope "dynamodb" denies, in the
# network ACL FIS swaps in, only the region's DynamoDB prefix list: the addresses the
# DynamoDB gateway endpoint (modules/network) routes to, so the tasks' one path to DynamoDB
# is cut and nothing else. SQS cannot be cut this way: AWS publishes no prefix list for it
# (through the NAT gateway it is public addresses shared with other services) and, with
# interface endpoints, its endpoint's addresses sit in the tasks' own subnets, where a
# network ACL does not apply. SQS stays up in this template.
resource "aws_fis_experiment_template" "aws_outage" {
  description = "${var.name}: DynamoDB unreachable from the private subnets while RDS Proxy has no target, ${var.db_outage_seconds}s"
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

  action {
    name      = "cut-dynamodb"
    action_id = "aws:network:disrupt-connectivity"

    parameter {
      key   = "duration"
      value = "PT${var.db_outage_seconds}S"
    }

    parameter {
      key   = "scope"
      value = "dynamodb"
    }

    target {
      key   = "Subnets"
      value = "private-subnets"
    }
  }

  target {
    name           = "private-subnets"
    resource_type  = "aws:ec2:subnet"
    selection_mode = "ALL"

    resource_tag {
      key   = var.fis_target_tag_key
      value = var.fis_target_tag_values.private_subnets
    }
  }

  stop_condition {
    source = "aws:cloudwatch:alarm"
    value  = var.stop_alarm_arn
  }

  stop_condition {
    source = "aws:cloudwatch:alarm"
    value  = var.dlq_alarm_arn
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

  tags = merge(var.tags, { Name = "${var.name}-aws-outage" })
}

# 7. Worker crash: every order-worker task stopped mid-drain; ECS starts new ones, and the
# messages they held come back when their visibility timeout ends.
resource "aws_fis_experiment_template" "worker_crash" {
  count = local.has_worker ? 1 : 0

  description = "${var.name}: stop every order-worker task"
  role_arn    = aws_iam_role.fis.arn

  action {
    name      = "stop-worker-tasks"
    action_id = "aws:ecs:stop-task"

    target {
      key   = "Tasks"
      value = "worker-tasks"
    }
  }

  target {
    name           = "worker-tasks"
    resource_type  = "aws:ecs:task"
    selection_mode = "ALL"

    resource_tag {
      key   = var.fis_target_tag_key
      value = var.fis_target_tag_values["order-worker"]
    }
  }

  stop_condition {
    source = "aws:cloudwatch:alarm"
    value  = var.stop_alarm_arn
  }

  stop_condition {
    source = "aws:cloudwatch:alarm"
    value  = var.dlq_alarm_arn
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

  tags = merge(var.tags, { Name = "${var.name}-worker-crash" })
}

# 8. Reader loss: the reader instance rebooted (no failover); the catalog must keep serving.
# The tag is the instance's, not the role's: after an odd number of failovers the tagged
# instance is the writer (fail back first: aws rds failover-db-cluster).
resource "aws_fis_experiment_template" "reader_loss" {
  description = "${var.name}: reboot the Aurora reader instance"
  role_arn    = aws_iam_role.fis.arn

  action {
    name      = "reboot-reader"
    action_id = "aws:rds:reboot-db-instances"

    parameter {
      key   = "forceFailover"
      value = "false"
    }

    target {
      key   = "DBInstances"
      value = "aurora-reader"
    }
  }

  target {
    name           = "aurora-reader"
    resource_type  = "aws:rds:db"
    selection_mode = "ALL"

    resource_tag {
      key   = var.fis_target_tag_key
      value = var.fis_target_tag_values.aurora_reader
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

  tags = merge(var.tags, { Name = "${var.name}-reader-loss" })
}

# 9. Fleet crash: while the database is out (the db-outage runbook), every orders task stopped
# at once; ECS starts new ones, which must take over the orders the stopped ones accepted (the
# one-owner design: DynamoDB holds them, not a task's memory). The stop waits
# fleet_crash_after_seconds so that it strikes inside the outage (a runbook action ends only
# after its restore, so the stop cannot start after it).
resource "aws_fis_experiment_template" "fleet_crash" {
  description = "${var.name}: stop every orders task ${var.fleet_crash_after_seconds}s into a ${var.db_outage_seconds}s database outage"
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

  action {
    name      = "outage-under-way"
    action_id = "aws:fis:wait"

    parameter {
      key   = "duration"
      value = "PT${var.fleet_crash_after_seconds}S"
    }
  }

  action {
    name        = "stop-orders-tasks"
    action_id   = "aws:ecs:stop-task"
    start_after = ["outage-under-way"]

    target {
      key   = "Tasks"
      value = "orders-tasks"
    }
  }

  target {
    name           = "orders-tasks"
    resource_type  = "aws:ecs:task"
    selection_mode = "ALL"

    resource_tag {
      key   = var.fis_target_tag_key
      value = var.fis_target_tag_values["orders"]
    }
  }

  stop_condition {
    source = "aws:cloudwatch:alarm"
    value  = var.stop_alarm_arn
  }

  stop_condition {
    source = "aws:cloudwatch:alarm"
    value  = var.dlq_alarm_arn
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

  tags = merge(var.tags, { Name = "${var.name}-fleet-crash" })
}

# 10. AWS slow: what the orders tasks send to DynamoDB and SQS delayed (the database stays
# fast). Needs the tasks' opt-in and the SSM sidecar, like the brownout.
resource "aws_fis_experiment_template" "aws_slow" {
  count = var.task_fault_injection ? 1 : 0

  description = "${var.name}: delay the orders tasks' DynamoDB and SQS traffic by ${var.aws_slow_delay_ms} ms for ${var.aws_slow_seconds}s"
  role_arn    = aws_iam_role.fis.arn

  action {
    name      = "delay-aws-answers"
    action_id = "aws:ecs:task-network-latency"

    parameter {
      key   = "duration"
      value = "PT${var.aws_slow_seconds}S"
    }

    parameter {
      key   = "delayMilliseconds"
      value = tostring(var.aws_slow_delay_ms)
    }

    parameter {
      key   = "jitterMilliseconds"
      value = "0"
    }

    parameter {
      key   = "flowsPercent"
      value = "100"
    }

    parameter {
      key   = "sources"
      value = join(",", local.aws_slow_sources)
    }

    parameter {
      key   = "useEcsFaultInjectionEndpoints"
      value = "true"
    }

    target {
      key   = "Tasks"
      value = "orders-tasks"
    }
  }

  target {
    name           = "orders-tasks"
    resource_type  = "aws:ecs:task"
    selection_mode = "ALL"

    resource_tag {
      key   = var.fis_target_tag_key
      value = var.fis_target_tag_values["orders"]
    }
  }

  stop_condition {
    source = "aws:cloudwatch:alarm"
    value  = var.stop_alarm_arn
  }

  stop_condition {
    source = "aws:cloudwatch:alarm"
    value  = var.dlq_alarm_arn
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

  tags = merge(var.tags, { Name = "${var.name}-aws-slow" })
}
