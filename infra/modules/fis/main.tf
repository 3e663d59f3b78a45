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
  # Where the experiment reports go in their bucket: <prefix>/<template>/...
  report_prefix = "fis-reports"
  # aws-slow delays what the orders tasks send to SQS (its regional endpoint's name, resolved
  # when the action starts) while the database is out: the lab's fault (a late order queue,
  # every wake-up's outcome unknown; the order table, DynamoDB, answers on time).
  aws_slow_sources = ["sqs.${local.region}.${data.aws_partition.current.dns_suffix}"]

  # The shop's tasks (FIS may send commands to, and the broker deregister, their managed
  # instances only: the activations tag each one with its task's ARN).
  shop_task_arns = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:task/${var.ecs_cluster_name}/*"
  # Where the broker leaves each task's activation for its sidecar.
  sidecar_parameter_prefix     = "/${var.name}/fis-sidecar"
  sidecar_parameter_arn_prefix = "arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter${local.sidecar_parameter_prefix}"
  # The broker's two jobs, by the task's lastStatus that starts them.
  sidecar_events = var.task_fault_injection ? { register = "RUNNING", deregister = "STOPPED" } : {}
}

resource "aws_cloudwatch_log_group" "this" {
  name              = "/${var.name}/fis"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn

  tags = var.tags
}

# FIS delivers the experiments' logs through CloudWatch Logs' log delivery, which needs a
# resource policy letting delivery.logs.amazonaws.com write to the log group. Made here, for
# this log group and account only, so that the FIS role needs no account-wide
# logs:PutResourcePolicy.
resource "aws_cloudwatch_log_resource_policy" "fis" {
  policy_name = "${var.name}-fis-log-delivery"

  policy_document = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "FisLogDelivery"
      Effect    = "Allow"
      Principal = { Service = "delivery.logs.amazonaws.com" }
      Action    = ["logs:CreateLogStream", "logs:PutLogEvents"]
      Resource  = ["${aws_cloudwatch_log_group.this.arn}:*"]
      Condition = {
        StringEquals = { "aws:SourceAccount" = local.account_id }
        ArnLike      = { "aws:SourceArn" = "arn:${local.partition}:logs:${local.region}:${local.account_id}:*" }
      }
    }]
  })
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

# The FIS sidecar of a chaos deployment (task_fault_injection): the role its agent runs as,
# and the activation broker that registers each task, so that the app's task role never may
# create activations or pass a role (infra/fis-sidecar, sidecar-activation.yaml).

# The registered tasks' agent: what the SSM agent needs, nothing else (the broker cleans up).
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

resource "aws_ssm_document" "sidecar_activation" {
  count = var.task_fault_injection ? 1 : 0

  name            = "${var.name}-fis-sidecar-activation"
  document_type   = "Automation"
  document_format = "YAML"
  content         = file("${path.module}/sidecar-activation.yaml")

  tags = var.tags
}

# The broker's role: activations (no resource-level permissions), the managed-instance role
# to pass to SSM, this prefix's parameters, the shop's key through SSM, and deregistering the
# shop's own tasks' managed instances.
resource "aws_iam_role" "sidecar_broker" {
  count = var.task_fault_injection ? 1 : 0

  name = "${var.name}-fis-sidecar-broker"

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

resource "aws_iam_role_policy" "sidecar_broker" {
  #checkov:skip=CKV_AWS_290:ssm:CreateActivation, AddTagsToResource (of the activation being created), DescribeActivations, DeleteActivation and DescribeInstanceInformation have no resource-level permissions; the role is the broker's alone, assumed by SSM Automation of this account
  #checkov:skip=CKV_AWS_355:same: "*" only for those activation calls
  count = var.task_fault_injection ? 1 : 0

  name = "broker-the-sidecar-activations"
  role = aws_iam_role.sidecar_broker[0].id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ActivationsForTheTasks"
        Effect   = "Allow"
        Action   = ["ssm:CreateActivation", "ssm:AddTagsToResource", "ssm:DescribeActivations", "ssm:DeleteActivation", "ssm:DescribeInstanceInformation"]
        Resource = ["*"]
      },
      {
        Sid       = "HandSsmTheManagedInstanceRole"
        Effect    = "Allow"
        Action    = ["iam:PassRole"]
        Resource  = [aws_iam_role.managed_instance[0].arn]
        Condition = { StringEquals = { "iam:PassedToService" = "ssm.amazonaws.com" } }
      },
      {
        Sid      = "LeaveTheActivationForTheSidecar"
        Effect   = "Allow"
        Action   = ["ssm:PutParameter", "ssm:DeleteParameter"]
        Resource = ["${local.sidecar_parameter_arn_prefix}/*"]
      },
      {
        Sid       = "EncryptItThroughSsm"
        Effect    = "Allow"
        Action    = ["kms:Encrypt", "kms:GenerateDataKey"]
        Resource  = [var.kms_key_arn]
        Condition = { StringEquals = { "kms:ViaService" = "ssm.${local.region}.amazonaws.com" } }
      },
      {
        Sid       = "DeregisterTheShopsStoppedTasks"
        Effect    = "Allow"
        Action    = ["ssm:DeregisterManagedInstance"]
        Resource  = ["arn:${local.partition}:ssm:${local.region}:${local.account_id}:managed-instance/*"]
        Condition = { StringLike = { "ssm:resourceTag/ECS_TASK_ARN" = local.shop_task_arns } }
      },
    ]
  })
}

# EventBridge starts the broker from the opted-in services' task state changes.
resource "aws_iam_role" "sidecar_events" {
  count = var.task_fault_injection ? 1 : 0

  name = "${var.name}-fis-sidecar-events"

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "events.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  })

  tags = var.tags
}

resource "aws_iam_role_policy" "sidecar_events" {
  count = var.task_fault_injection ? 1 : 0

  name = "start-the-broker"
  role = aws_iam_role.sidecar_events[0].id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "StartTheBroker"
        Effect   = "Allow"
        Action   = ["ssm:StartAutomationExecution"]
        Resource = ["arn:${local.partition}:ssm:${local.region}:${local.account_id}:automation-definition/${aws_ssm_document.sidecar_activation[0].name}:*"]
      },
      {
        Sid       = "HandItItsRole"
        Effect    = "Allow"
        Action    = ["iam:PassRole"]
        Resource  = [aws_iam_role.sidecar_broker[0].arn]
        Condition = { StringEquals = { "iam:PassedToService" = "ssm.amazonaws.com" } }
      },
    ]
  })
}

resource "aws_cloudwatch_event_rule" "sidecar" {
  for_each = local.sidecar_events

  name        = "${var.name}-fis-sidecar-${each.key}"
  description = "Chaos Shop: ${each.key} the FIS sidecar of a task that is ${lower(each.value)}"

  event_pattern = jsonencode({
    source        = ["aws.ecs"]
    "detail-type" = ["ECS Task State Change"]
    detail = {
      clusterArn = [var.ecs_cluster_arn]
      group      = [for service in var.sidecar_services : "service:${service}"]
      lastStatus = [each.value]
    }
  })

  tags = var.tags
}

resource "aws_cloudwatch_event_target" "sidecar" {
  for_each = local.sidecar_events

  rule     = aws_cloudwatch_event_rule.sidecar[each.key].name
  arn      = "arn:${local.partition}:ssm:${local.region}:${local.account_id}:automation-definition/${aws_ssm_document.sidecar_activation[0].name}"
  role_arn = aws_iam_role.sidecar_events[0].arn

  input_transformer {
    input_paths = {
      taskArn = "$.detail.taskArn"
      zone    = "$.detail.availabilityZone"
    }
    # Placeholders written after jsonencode, which would escape their angle brackets.
    input_template = replace(replace(jsonencode({
      AutomationAssumeRole    = [aws_iam_role.sidecar_broker[0].arn]
      Action                  = [each.key]
      TaskArn                 = ["TASK_ARN"]
      AvailabilityZone        = ["ZONE"]
      ManagedInstanceRoleName = [aws_iam_role.managed_instance[0].name]
      ParameterPrefix         = [local.sidecar_parameter_prefix]
      KmsKeyId                = [var.kms_key_arn]
    }), "TASK_ARN", "<taskArn>"), "ZONE", "<zone>")
  }
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
  #checkov:skip=CKV_AWS_290:tag:GetResources, ecs:ListTasks, ssm:ListCommands/CancelCommand, the EC2 describes, the log-delivery calls and cloudwatch:GetMetricWidgetImage have no resource-level permissions; the writes are scoped to this shop's cluster, tasks, reader, VPC, runbooks, log group and report prefix
  #checkov:skip=CKV_AWS_355:same: only actions without resource-level permissions use "*"
  name = "chaos-shop-faults"
  role = aws_iam_role.fis.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat([
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
        # aws:ecs:task-network-latency (brownout, aws-slow) looks up where the tasks run.
        Sid      = "SeeTheShopsContainerInstances"
        Effect   = "Allow"
        Action   = ["ecs:DescribeContainerInstances"]
        Resource = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:container-instance/${var.ecs_cluster_name}/*"]
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
      # Brownout, aws-slow: FIS sends its latency document (AWSFIS-Run-*) to the tasks' SSM
      # sidecars, and only to managed instances the broker tagged with a task of this cluster.
      {
        Sid      = "SendFisDocuments"
        Effect   = "Allow"
        Action   = ["ssm:SendCommand"]
        Resource = ["arn:${local.partition}:ssm:${local.region}::document/AWSFIS-Run-*"]
      },
      {
        Sid       = "ToTheShopsTasksOnly"
        Effect    = "Allow"
        Action    = ["ssm:SendCommand"]
        Resource  = ["arn:${local.partition}:ssm:${local.region}:${local.account_id}:managed-instance/*"]
        Condition = { StringLike = { "ssm:resourceTag/ECS_TASK_ARN" = local.shop_task_arns } }
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
        Action   = ["ec2:DescribeNetworkAcls", "ec2:DescribeSubnets", "ec2:DescribeVpcs", "ec2:DescribeManagedPrefixLists", "ec2:DescribeInstances"]
        Resource = ["*"]
      },
      {
        Sid      = "ReadTheDynamoDbPrefixList"
        Effect   = "Allow"
        Action   = ["ec2:GetManagedPrefixListEntries"]
        Resource = ["arn:${local.partition}:ec2:${local.region}:aws:prefix-list/*"]
      },
      {
        Sid      = "DeliverExperimentLogs"
        Effect   = "Allow"
        Action   = ["logs:CreateLogDelivery", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups"]
        Resource = ["*"]
      },
      {
        # The delivery's resource policy exists already (aws_cloudwatch_log_resource_policy
        # below): a put, if FIS makes one, may touch the experiments' log group only.
        Sid      = "PolicyOfTheExperimentLogGroupOnly"
        Effect   = "Allow"
        Action   = ["logs:PutResourcePolicy"]
        Resource = [aws_cloudwatch_log_group.this.arn, "${aws_cloudwatch_log_group.this.arn}:*"]
      },
      ],
      # Experiment reports: the dashboard's graphs, written to this prefix of the bucket.
      slice(local.report_statements, 0, var.report == null ? 0 : length(local.report_statements)),
    )
  })
}

# The FIS role's statements for the experiment reports, in its policy only with a report.
locals {
  report_statements = [
    {
      Sid      = "ReadTheDashboard"
      Effect   = "Allow"
      Action   = ["cloudwatch:GetDashboard"]
      Resource = [try(var.report.dashboard_arn, "none")]
    },
    {
      Sid      = "DrawItsGraphs"
      Effect   = "Allow"
      Action   = ["cloudwatch:GetMetricWidgetImage"]
      Resource = ["*"]
    },
    {
      Sid      = "WriteTheReports"
      Effect   = "Allow"
      Action   = ["s3:PutObject", "s3:GetObject"]
      Resource = ["arn:${local.partition}:s3:::${try(var.report.bucket, "none")}/${local.report_prefix}/*"]
    },
    {
      Sid       = "EncryptThemThroughS3"
      Effect    = "Allow"
      Action    = ["kms:GenerateDataKey", "kms:Decrypt"]
      Resource  = [var.kms_key_arn]
      Condition = { StringEquals = { "kms:ViaService" = "s3.${local.region}.amazonaws.com" } }
    },
  ]
}

# The experiment templates: one map, one resource. Each template is its targets (found by
# tag) and its actions (an action's targets name the template's); every template stops on the
# customer-impact alarm (and, where orders are at risk, on the dead-letter queue's), logs to
# the experiments' log group and, with a report bucket, writes an experiment report (the
# dashboard before, during and after). The keys are the lab's fault names.
locals {
  # The db-outage runbook, as the db-outage, aws-outage and fleet-crash templates start it.
  remove_proxy_target = {
    action_id = "aws:ssm:start-automation-execution"
    targets   = {}
    parameters = {
      documentArn = aws_ssm_document.db_outage.arn
      documentParameters = jsonencode({
        AutomationAssumeRole = aws_iam_role.automation.arn
        DBProxyName          = var.proxy_name
        TargetGroupName      = var.proxy_target_group_name
        DBClusterIdentifier  = var.cluster_identifier
        OutageDuration       = "PT${var.db_outage_seconds}S"
      })
      maxDuration = "PT${local.outage_max_minutes}M"
    }
    start_after = []
  }
  # aws:ecs:task-network-latency on Fargate: through the ECS fault injection endpoints, with
  # the tools the sidecar image has built in (nothing to install).
  task_latency = {
    jitterMilliseconds            = "0"
    flowsPercent                  = "100"
    useEcsFaultInjectionEndpoints = "true"
    installDependencies           = "false"
  }

  # The templates every deployment has.
  templates_always = {
    # Aurora writer failover: the reader (promotion tier 1) becomes the writer.
    failover = {
      description = "force an Aurora writer failover"
      stop_on_dlq = false
      targets = {
        aurora-cluster = { resource_type = "aws:rds:cluster", selection_mode = "ALL", tag = var.fis_target_tag_values.aurora }
      }
      actions = {
        failover-writer = { action_id = "aws:rds:failover-db-cluster", targets = { Clusters = "aurora-cluster" }, parameters = {}, start_after = [] }
      }
    }

    # Full database outage: the proxy loses its target for a while (SSM Automation).
    db-outage = {
      description = "deregister Aurora from RDS Proxy for ${var.db_outage_seconds}s, then restore"
      stop_on_dlq = false
      targets     = {}
      actions     = { remove-proxy-target = local.remove_proxy_target }
    }

    # Credential rotation under traffic: the master secret rotated now (SSM Automation).
    credential-rotation = {
      description = "rotate the Aurora master user's secret now and wait for the rotation"
      stop_on_dlq = false
      targets     = {}
      actions = {
        rotate-master-secret = {
          action_id = "aws:ssm:start-automation-execution"
          targets   = {}
          parameters = {
            documentArn = aws_ssm_document.credential_rotation.arn
            documentParameters = jsonencode({
              AutomationAssumeRole = aws_iam_role.rotation.arn
              SecretId             = var.master_secret_arn
            })
            maxDuration = "PT15M"
          }
          start_after = []
        }
      }
    }

    # AWS outage while the database is out: the db-outage runbook and a DynamoDB cut, in
    # parallel, for the same time.
    # The scoping lesson: a fault must cut the path it claims to cut, and only that. The
    # tasks, RDS Proxy, Aurora and the interface endpoints share the private subnets, so
    # scope "all" on them would cut the database and the ALB's way to the tasks too: that
    # is a network partition, not an AWS outage. Scope "dynamodb" denies, in the network ACL
    # FIS swaps in, only the region's DynamoDB prefix list: the addresses the DynamoDB
    # gateway endpoint (modules/network) routes to, so the tasks' one path to DynamoDB is
    # cut and nothing else. SQS cannot be cut this way: AWS publishes no prefix list for it
    # (through a NAT gateway it is public addresses shared with other services) and its
    # interface endpoint's addresses sit in the tasks' own subnets, where a network ACL does
    # not apply. SQS stays up in this template.
    aws-outage = {
      description = "DynamoDB unreachable from the private subnets while RDS Proxy has no target, ${var.db_outage_seconds}s"
      stop_on_dlq = true
      targets = {
        private-subnets = { resource_type = "aws:ec2:subnet", selection_mode = "ALL", tag = var.fis_target_tag_values.private_subnets }
      }
      actions = {
        remove-proxy-target = local.remove_proxy_target
        cut-dynamodb = {
          action_id   = "aws:network:disrupt-connectivity"
          targets     = { Subnets = "private-subnets" }
          parameters  = { duration = "PT${var.db_outage_seconds}S", scope = "dynamodb" }
          start_after = []
        }
      }
    }

    # Reader loss: the reader instance rebooted (no failover); the catalog must keep
    # serving. The tag is the instance's, not the role's: after an odd number of failovers
    # the tagged instance is the writer (fail back first: aws rds failover-db-cluster).
    reader-loss = {
      description = "reboot the Aurora reader instance"
      stop_on_dlq = false
      targets = {
        aurora-reader = { resource_type = "aws:rds:db", selection_mode = "ALL", tag = var.fis_target_tag_values.aurora_reader }
      }
      actions = {
        reboot-reader = { action_id = "aws:rds:reboot-db-instances", targets = { DBInstances = "aurora-reader" }, parameters = { forceFailover = "false" }, start_after = [] }
      }
    }

    # Fleet crash: while the database is out, every orders task stopped at once; ECS starts
    # new ones, which must take over the orders the stopped ones accepted (the one-owner
    # design: DynamoDB holds them, not a task's memory). The stop waits
    # fleet_crash_after_seconds so that it strikes inside the outage (an action starts
    # after another only once that one has ended, and the runbook ends after its restore).
    fleet-crash = {
      description = "stop every orders task ${var.fleet_crash_after_seconds}s into a ${var.db_outage_seconds}s database outage"
      stop_on_dlq = true
      targets = {
        orders-tasks = { resource_type = "aws:ecs:task", selection_mode = "ALL", tag = var.fis_target_tag_values["orders"] }
      }
      actions = {
        remove-proxy-target = local.remove_proxy_target
        outage-under-way    = { action_id = "aws:fis:wait", targets = {}, parameters = { duration = "PT${var.fleet_crash_after_seconds}S" }, start_after = [] }
        stop-orders-tasks   = { action_id = "aws:ecs:stop-task", targets = { Tasks = "orders-tasks" }, parameters = {}, start_after = ["outage-under-way"] }
      }
    }
  }

  # One task of a service stopped (ECS starts a replacement), for each service: started by
  # hand (docs/aws.md), not by an experiment of the lab.
  templates_stop_task = { for service in var.services : "stop-task-${service}" => {
    description = "stop ${var.stop_task_selection} task(s) of ${service}"
    stop_on_dlq = false
    targets = {
      "${service}-tasks" = { resource_type = "aws:ecs:task", selection_mode = var.stop_task_selection, tag = var.fis_target_tag_values[service] }
    }
    actions = {
      "stop-${service}-task" = { action_id = "aws:ecs:stop-task", targets = { Tasks = "${service}-tasks" }, parameters = {}, start_after = [] }
    }
  } }

  # Worker crash: every order-worker task stopped mid-drain; ECS starts new ones, and the
  # messages they held come back when their visibility timeout ends. Where the worker is.
  templates_worker = {
    worker-crash = {
      description = "stop every order-worker task"
      stop_on_dlq = true
      targets = {
        worker-tasks = { resource_type = "aws:ecs:task", selection_mode = "ALL", tag = var.fis_target_tag_values["order-worker"] }
      }
      actions = {
        stop-worker-tasks = { action_id = "aws:ecs:stop-task", targets = { Tasks = "worker-tasks" }, parameters = {}, start_after = [] }
      }
    }
  }

  # In a chaos deployment only, where the tasks carry the SSM sidecar (modules/ecs_service).
  templates_chaos = {
    # Brownout: every database answer late. aws:ecs:task-network-latency delays a task's
    # egress (all of it unless scoped): `sources` scopes it to the database endpoints the
    # services dial (the proxy's, or the cluster's without the proxy), so answers from the
    # AWS APIs, the ALB's health checks and the interface endpoints are not delayed. FIS
    # resolves those names when the action starts: an address the name moves to later (a
    # failover) is not delayed.
    brownout = {
      description = "delay the database's answers to the catalog and orders tasks by ${var.brownout_delay_ms} ms for ${var.brownout_seconds}s"
      stop_on_dlq = false
      targets = {
        database-clients = { resource_type = "aws:ecs:task", selection_mode = "ALL", tag_key = var.fis_group_tag_key, tag = var.fis_group_tag_value }
      }
      actions = {
        delay-database-answers = {
          action_id = "aws:ecs:task-network-latency"
          targets   = { Tasks = "database-clients" }
          parameters = merge(local.task_latency, {
            duration          = "PT${var.brownout_seconds}S"
            delayMilliseconds = tostring(var.brownout_delay_ms)
            sources           = join(",", var.brownout_sources)
          })
          start_after = []
        }
      }
    }

    # AWS slow: the database out (the db-outage runbook) while what the orders tasks send to
    # SQS is delayed, as the lab's aws-slow does.
    aws-slow = {
      description = "a ${var.db_outage_seconds}s database outage while the orders tasks' SQS traffic is delayed by ${var.aws_slow_delay_ms} ms for ${var.aws_slow_seconds}s"
      stop_on_dlq = true
      targets = {
        orders-tasks = { resource_type = "aws:ecs:task", selection_mode = "ALL", tag = var.fis_target_tag_values["orders"] }
      }
      actions = {
        remove-proxy-target = local.remove_proxy_target
        delay-aws-answers = {
          action_id = "aws:ecs:task-network-latency"
          targets   = { Tasks = "orders-tasks" }
          parameters = merge(local.task_latency, {
            duration          = "PT${var.aws_slow_seconds}S"
            delayMilliseconds = tostring(var.aws_slow_delay_ms)
            sources           = join(",", local.aws_slow_sources)
          })
          start_after = []
        }
      }
    }
  }

  # Every template of this deployment (a filtering for keeps each template's own shape).
  templates = merge(
    local.templates_always,
    local.templates_stop_task,
    { for name, template in local.templates_worker : name => template if local.has_worker },
    { for name, template in local.templates_chaos : name => template if var.task_fault_injection },
  )
}

resource "aws_fis_experiment_template" "this" {
  for_each = local.templates

  description = "${var.name}: ${each.value.description}"
  role_arn    = aws_iam_role.fis.arn

  dynamic "action" {
    for_each = each.value.actions
    content {
      name        = action.key
      action_id   = action.value.action_id
      start_after = length(action.value.start_after) > 0 ? action.value.start_after : null

      dynamic "parameter" {
        for_each = action.value.parameters
        content {
          key   = parameter.key
          value = parameter.value
        }
      }

      dynamic "target" {
        for_each = action.value.targets
        content {
          key   = target.key
          value = target.value
        }
      }
    }
  }

  dynamic "target" {
    for_each = each.value.targets
    content {
      name           = target.key
      resource_type  = target.value.resource_type
      selection_mode = target.value.selection_mode

      resource_tag {
        key   = try(target.value.tag_key, var.fis_target_tag_key)
        value = target.value.tag
      }
    }
  }

  dynamic "stop_condition" {
    for_each = each.value.stop_on_dlq ? [var.stop_alarm_arn, var.dlq_alarm_arn] : [var.stop_alarm_arn]
    content {
      source = "aws:cloudwatch:alarm"
      value  = stop_condition.value
    }
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

  # A report per experiment (a PDF in the bucket): what happened, with the dashboard's graphs
  # from before the fault to after it.
  dynamic "experiment_report_configuration" {
    for_each = var.report == null ? [] : [var.report]
    content {
      pre_experiment_duration  = "PT${experiment_report_configuration.value.minutes_before}M"
      post_experiment_duration = "PT${experiment_report_configuration.value.minutes_after}M"

      data_sources {
        cloudwatch_dashboard {
          dashboard_arn = experiment_report_configuration.value.dashboard_arn
        }
      }

      outputs {
        s3_configuration {
          bucket_name = experiment_report_configuration.value.bucket
          prefix      = "${local.report_prefix}/${each.key}"
        }
      }
    }
  }

  tags = merge(var.tags, { Name = "${var.name}-${each.key}" })
}
