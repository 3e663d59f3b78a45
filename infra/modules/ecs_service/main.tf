data "aws_region" "current" {}

locals {
  log_group_name = "/${var.cluster_name}/${var.name}"
  environment    = [for k in sort(keys(var.environment)) : { name = k, value = var.environment[k] }]
  secrets        = [for k in sort(keys(var.secrets)) : { name = k, valueFrom = var.secrets[k] }]
  # The container's own probe: the cheap /health of the process (no curl in a slim image).
  health_command = "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${var.health_check_port}${var.health_check_path}', timeout=3)"
  command        = { for k, v in { command = var.command } : k => v if v != null }

  # FIS's aws:ecs:task actions reach a task through an SSM agent sidecar registered as a
  # managed instance (tagged with the task's ARN); on Fargate the network actions also need
  # the task's opt-in (enableFaultInjection) and one process namespace (pidMode task). The
  # sidecar (infra/fis-sidecar) has its tools built in and a read-only root filesystem: it
  # writes only to these task-scoped volumes (its registration, its logs, at's queue).
  sidecar_volumes = {
    fis-ssm-state = "/var/lib/amazon/ssm"
    fis-ssm-logs  = "/var/log/amazon/ssm"
    fis-at-spool  = "/var/spool/at"
    fis-run       = "/run"
    fis-tmp       = "/tmp"
  }
  fault_injection_sidecars = [for fi in var.fault_injection[*] : {
    name                   = "fis-ssm-agent"
    image                  = fi.image
    essential              = false
    readonlyRootFilesystem = true
    environment            = [{ name = "ACTIVATION_PARAMETER_PREFIX", value = fi.activation_parameter_prefix }]
    mountPoints            = [for volume, path in local.sidecar_volumes : { sourceVolume = volume, containerPath = path, readOnly = false }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.this.name
        awslogs-region        = data.aws_region.current.region
        awslogs-stream-prefix = "${var.name}-fis"
      }
    }
  }]
}

resource "aws_cloudwatch_log_group" "this" {
  name              = local.log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn

  tags = var.tags
}

# Execution role: what ECS itself needs to start the task (pull the image, write logs and,
# only for secrets injected at start, read them into the container's environment).
resource "aws_iam_role" "execution" {
  name = "${var.cluster_name}-${var.name}-execution"

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ecs-tasks.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })

  tags = var.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

resource "aws_iam_role_policy" "execution_secrets" {
  count = length(var.secret_arns) > 0 ? 1 : 0

  name = "read-secrets"
  role = aws_iam_role.execution.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = var.secret_arns
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

# Task role: what the application calls (its table, its queue, its secrets), nothing else.
resource "aws_iam_role" "task" {
  name = "${var.cluster_name}-${var.name}-task"

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ecs-tasks.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })

  tags = var.tags
}

resource "aws_iam_role_policy" "task" {
  count = var.task_policy_json == null ? 0 : 1

  name   = "${var.name}-least-privilege"
  role   = aws_iam_role.task.id
  policy = var.task_policy_json
}

# Secrets the application reads itself, at start and again whenever the value it holds stops
# working (e.g. the database password after a rotation): exactly these secrets, decrypted
# through Secrets Manager only.
resource "aws_iam_role_policy" "task_secrets" {
  count = length(var.task_secret_arns) > 0 ? 1 : 0

  name = "read-secrets"
  role = aws_iam_role.task.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ReadTheSecrets"
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = var.task_secret_arns
      },
      {
        Sid       = "DecryptThemThroughSecretsManager"
        Effect    = "Allow"
        Action    = ["kms:Decrypt"]
        Resource  = [var.kms_key_arn]
        Condition = { StringEquals = { "kms:ViaService" = "secretsmanager.${data.aws_region.current.region}.amazonaws.com" } }
      },
    ]
  })
}

# The FIS sidecar reads its task's activation, which the broker (infra/modules/fis) left
# encrypted under the prefix, and nothing else: no ssm:CreateActivation, no iam:PassRole.
resource "aws_iam_role_policy" "task_fault_injection" {
  count = var.fault_injection == null ? 0 : 1

  name = "fis-sidecar-reads-its-activation"
  role = aws_iam_role.task.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ReadTheActivation"
        Effect   = "Allow"
        Action   = ["ssm:GetParameter"]
        Resource = ["${var.fault_injection.activation_parameter_arn_prefix}/*"]
      },
      {
        Sid       = "DecryptItThroughSsm"
        Effect    = "Allow"
        Action    = ["kms:Decrypt"]
        Resource  = [var.kms_key_arn]
        Condition = { StringEquals = { "kms:ViaService" = "ssm.${data.aws_region.current.region}.amazonaws.com" } }
      },
    ]
  })
}

resource "aws_ecs_task_definition" "this" {
  family                   = "${var.cluster_name}-${var.name}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  enable_fault_injection   = var.fault_injection != null
  pid_mode                 = var.fault_injection == null ? null : "task"

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  # The sidecar's writable places (task storage, gone with the task).
  dynamic "volume" {
    for_each = var.fault_injection == null ? {} : local.sidecar_volumes
    content {
      name = volume.key
    }
  }

  container_definitions = jsonencode(concat(local.fault_injection_sidecars, [merge({
    name                   = var.name
    image                  = var.image
    essential              = true
    readonlyRootFilesystem = true
    stopTimeout            = 30
    portMappings = [{
      containerPort = var.container_port
      protocol      = "tcp"
    }]
    environment = local.environment
    secrets     = local.secrets
    healthCheck = {
      command     = ["CMD", "python", "-c", local.health_command]
      interval    = 10
      timeout     = 5
      retries     = 3
      startPeriod = 15
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.this.name
        awslogs-region        = data.aws_region.current.region
        awslogs-stream-prefix = var.name
      }
    }
  }, local.command)]))

  tags = var.tags
}

resource "aws_ecs_service" "this" {
  name                               = var.name
  cluster                            = var.cluster_arn
  task_definition                    = aws_ecs_task_definition.this.arn
  desired_count                      = var.desired_count
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = var.target_group_arn == null ? null : 30
  enable_ecs_managed_tags            = true
  # The tasks carry the service's tags, the FIS target tag among them.
  propagate_tags        = "SERVICE"
  wait_for_steady_state = false

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = var.security_group_ids
    assign_public_ip = false
  }

  dynamic "load_balancer" {
    for_each = var.target_group_arn == null ? [] : [var.target_group_arn]
    content {
      target_group_arn = load_balancer.value
      container_name   = var.name
      container_port   = var.container_port
    }
  }

  # A deployment whose tasks never get healthy is rolled back instead of replacing the
  # running tasks with crashing ones.
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  tags = var.tags

  lifecycle {
    ignore_changes = [desired_count] # owned by autoscaling once created
  }
}

resource "aws_appautoscaling_target" "this" {
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${var.cluster_name}/${aws_ecs_service.this.name}"
  min_capacity       = var.min_capacity
  max_capacity       = var.max_capacity

  tags = var.tags
}

resource "aws_appautoscaling_policy" "cpu" {
  name               = "${var.name}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this.service_namespace
  scalable_dimension = aws_appautoscaling_target.this.scalable_dimension
  resource_id        = aws_appautoscaling_target.this.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.cpu_target_percent
    scale_in_cooldown  = 120
    scale_out_cooldown = 60

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

# The worker also scales on its backlog: visible messages per running task.
resource "aws_appautoscaling_policy" "queue" {
  count = var.queue_scaling == null ? 0 : 1

  name               = "${var.name}-queue-backlog"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this.service_namespace
  scalable_dimension = aws_appautoscaling_target.this.scalable_dimension
  resource_id        = aws_appautoscaling_target.this.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.queue_scaling.backlog_per_task
    scale_in_cooldown  = 120
    scale_out_cooldown = 60

    customized_metric_specification {
      metrics {
        id          = "visible"
        label       = "Messages waiting"
        return_data = false
        metric_stat {
          stat = "Average"
          metric {
            namespace   = "AWS/SQS"
            metric_name = "ApproximateNumberOfMessagesVisible"
            dimensions {
              name  = "QueueName"
              value = var.queue_scaling.queue_name
            }
          }
        }
      }

      metrics {
        id          = "tasks"
        label       = "Running tasks"
        return_data = false
        metric_stat {
          stat = "Average"
          metric {
            namespace   = "ECS/ContainerInsights"
            metric_name = "RunningTaskCount"
            dimensions {
              name  = "ClusterName"
              value = var.cluster_name
            }
            dimensions {
              name  = "ServiceName"
              value = aws_ecs_service.this.name
            }
          }
        }
      }

      metrics {
        id          = "backlog"
        label       = "Messages per task"
        expression  = "visible / tasks"
        return_data = true
      }
    }
  }
}
