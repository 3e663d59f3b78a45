data "aws_region" "current" {}

locals {
  region = data.aws_region.current.region
  alb    = ["AWS/ApplicationELB", "RequestCount", "LoadBalancer", var.alb_arn_suffix]

  # The order-worker logs one line per dead-lettered order, its message starting with
  # "order failed:" (the line itself starts with the time, level and logger). A quoted term
  # matches that exact text anywhere in the line, case included.
  orders_failed = {
    namespace = "ChaosShop"
    metric    = "OrdersFailed"
    pattern   = "\"order failed:\""
  }
  worker_deployed = var.worker_log_group_name != null
}

# Customer impact: the share of requests answered 5xx (by the ALB itself, e.g. 502/504, or by
# a service). The FIS templates stop on it.
resource "aws_cloudwatch_metric_alarm" "alb_5xx_rate" {
  alarm_name          = "${var.name}-alb-5xx-rate"
  alarm_description   = "More than ${var.alb_5xx_percent}% of requests answered 5xx: customers are hurt; FIS experiments stop on this alarm."
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alb_5xx_percent
  evaluation_periods  = var.alb_5xx_evaluation_minutes
  datapoints_to_alarm = var.alb_5xx_evaluation_minutes
  treat_missing_data  = "notBreaching"
  actions_enabled     = true
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions

  metric_query {
    id          = "rate"
    expression  = "100 * (FILL(elb5xx, 0) + FILL(target5xx, 0)) / requests"
    label       = "5xx, % of requests"
    return_data = true
  }

  metric_query {
    id = "requests"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "RequestCount"
      period      = 60
      stat        = "Sum"
      dimensions  = { LoadBalancer = var.alb_arn_suffix }
    }
  }

  metric_query {
    id = "elb5xx"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_ELB_5XX_Count"
      period      = 60
      stat        = "Sum"
      dimensions  = { LoadBalancer = var.alb_arn_suffix }
    }
  }

  metric_query {
    id = "target5xx"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_Target_5XX_Count"
      period      = 60
      stat        = "Sum"
      dimensions  = { LoadBalancer = var.alb_arn_suffix }
    }
  }

  tags = var.tags
}

# Any message in the dead-letter queue is an order that needs a human (and a redrive).
resource "aws_cloudwatch_metric_alarm" "dlq_depth" {
  alarm_name          = "${var.name}-orders-dlq-not-empty"
  alarm_description   = "Orders in the dead-letter queue: find the cause, then `python -m order_worker redrive`."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = var.dlq_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  actions_enabled     = true
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions

  tags = var.tags
}

# Orders that reached their final state `failed` (dead-lettered), counted from the worker's
# log: unlike the DLQ depth, a redrive or a purge does not hide that they happened.
resource "aws_cloudwatch_log_metric_filter" "orders_failed" {
  count = local.worker_deployed ? 1 : 0

  name           = "${var.name}-orders-failed"
  log_group_name = var.worker_log_group_name
  pattern        = local.orders_failed.pattern

  metric_transformation {
    namespace     = local.orders_failed.namespace
    name          = local.orders_failed.metric
    value         = "1"
    default_value = "0"
    unit          = "Count"
  }
}

resource "aws_cloudwatch_metric_alarm" "orders_failed" {
  count = local.worker_deployed ? 1 : 0

  alarm_name          = "${var.name}-orders-failed"
  alarm_description   = "Orders marked failed (dead-lettered) in the last 5 minutes: see the worker's `order failed:` lines, fix the cause, then `python -m order_worker redrive`."
  namespace           = aws_cloudwatch_log_metric_filter.orders_failed[0].metric_transformation[0].namespace
  metric_name         = aws_cloudwatch_log_metric_filter.orders_failed[0].metric_transformation[0].name
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  actions_enabled     = true
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions

  tags = var.tags
}

# Orders waiting too long: the worker is down, or the database has been out for a while.
resource "aws_cloudwatch_metric_alarm" "queue_age" {
  alarm_name          = "${var.name}-orders-queue-age"
  alarm_description   = "The oldest queued order has waited more than ${var.queue_age_seconds} s."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = var.queue_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 2
  threshold           = var.queue_age_seconds
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  actions_enabled     = true
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions

  tags = var.tags
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name

  dashboard_body = jsonencode({
    widgets = [
      {
        type = "metric", x = 0, y = 0, width = 8, height = 6
        properties = {
          title   = "ALB requests"
          region  = local.region
          stat    = "Sum"
          period  = 60
          metrics = [local.alb]
        }
      },
      {
        type = "metric", x = 8, y = 0, width = 8, height = 6
        properties = {
          title  = "ALB 5xx"
          region = local.region
          stat   = "Sum"
          period = 60
          metrics = [
            ["AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", "LoadBalancer", var.alb_arn_suffix],
            ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "LoadBalancer", var.alb_arn_suffix],
          ]
        }
      },
      {
        type = "metric", x = 16, y = 0, width = 8, height = 6
        properties = {
          title  = "ALB latency"
          region = local.region
          period = 60
          metrics = [
            ["AWS/ApplicationELB", "TargetResponseTime", "LoadBalancer", var.alb_arn_suffix, { stat = "p50" }],
            ["AWS/ApplicationELB", "TargetResponseTime", "LoadBalancer", var.alb_arn_suffix, { stat = "p99" }],
          ]
        }
      },
      {
        type = "metric", x = 0, y = 6, width = 8, height = 6
        properties = {
          title  = "Healthy hosts"
          region = local.region
          stat   = "Minimum"
          period = 60
          metrics = [
            for name, tg in var.target_group_arn_suffixes :
            ["AWS/ApplicationELB", "HealthyHostCount", "TargetGroup", tg, "LoadBalancer", var.alb_arn_suffix, { label = name }]
          ]
        }
      },
      {
        type = "metric", x = 8, y = 6, width = 8, height = 6
        properties = {
          title  = "Database connections"
          region = local.region
          stat   = "Maximum"
          period = 60
          metrics = [
            ["AWS/RDS", "ClientConnections", "ProxyName", var.proxy_name, { label = "proxy: clients" }],
            ["AWS/RDS", "DatabaseConnections", "ProxyName", var.proxy_name, { label = "proxy: to Aurora" }],
            ["AWS/RDS", "DatabaseConnections", "DBClusterIdentifier", var.cluster_identifier, { label = "Aurora" }],
          ]
        }
      },
      {
        type = "metric", x = 16, y = 6, width = 8, height = 6
        properties = {
          title  = "Order queue"
          region = local.region
          stat   = "Maximum"
          period = 60
          metrics = [
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", var.queue_name, { label = "queue depth" }],
            ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", var.queue_name, { label = "oldest, s", yAxis = "right" }],
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", var.dlq_name, { label = "DLQ depth" }],
          ]
        }
      },
      {
        type = "metric", x = 0, y = 12, width = 8, height = 6
        properties = {
          title  = "Failed orders (dead-lettered)"
          region = local.region
          stat   = "Sum"
          period = 300
          metrics = [
            [local.orders_failed.namespace, local.orders_failed.metric, { label = "order failed, per 5 min" }],
          ]
        }
      },
      {
        type = "alarm", x = 8, y = 12, width = 16, height = 6
        properties = {
          title = "Alarms"
          alarms = concat(
            [
              aws_cloudwatch_metric_alarm.alb_5xx_rate.arn,
              aws_cloudwatch_metric_alarm.dlq_depth.arn,
              aws_cloudwatch_metric_alarm.queue_age.arn,
            ],
            aws_cloudwatch_metric_alarm.orders_failed[*].arn,
          )
        }
      },
    ]
  })
}
