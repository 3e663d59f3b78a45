output "alb_5xx_alarm_arn" {
  description = "ARN of the customer-impact alarm (the FIS stop condition)."
  value       = try(aws_cloudwatch_metric_alarm.alb_5xx_rate.arn, null)
}

output "alb_5xx_alarm_name" {
  description = "Name of the customer-impact alarm."
  value       = try(aws_cloudwatch_metric_alarm.alb_5xx_rate.alarm_name, null)
}

output "dlq_alarm_arn" {
  description = "ARN of the dead-letter queue alarm."
  value       = try(aws_cloudwatch_metric_alarm.dlq_depth.arn, null)
}

output "orders_failed_alarm_arn" {
  description = "ARN of the failed-orders alarm (null without the worker)."
  value       = try(aws_cloudwatch_metric_alarm.orders_failed[0].arn, null)
}

output "orders_failed_metric" {
  description = "Namespace and name of the failed-orders metric counted from the worker's log."
  value       = try({ namespace = local.orders_failed.namespace, name = local.orders_failed.metric }, null)
}

output "queue_age_alarm_arn" {
  description = "ARN of the queue-age alarm."
  value       = try(aws_cloudwatch_metric_alarm.queue_age.arn, null)
}

output "dashboard_arn" {
  description = "ARN of the CloudWatch dashboard (the FIS experiment reports draw its graphs)."
  value       = try(aws_cloudwatch_dashboard.this.dashboard_arn, null)
}

output "dashboard_name" {
  description = "Name of the CloudWatch dashboard."
  value       = try(aws_cloudwatch_dashboard.this.dashboard_name, null)
}
