output "arn" {
  description = "ARN of the load balancer."
  value       = try(aws_lb.this.arn, null)
}

output "dns_name" {
  description = "DNS name of the load balancer."
  value       = try(aws_lb.this.dns_name, null)
}

output "arn_suffix" {
  description = "ARN suffix of the load balancer (its CloudWatch dimension)."
  value       = try(aws_lb.this.arn_suffix, null)
}

output "https" {
  description = "Whether the shop is served over HTTPS."
  value       = local.https
}

output "target_group_arns" {
  description = "Target group ARN per service."
  value       = { for k, tg in aws_lb_target_group.this : k => tg.arn }
}

output "target_group_arn_suffixes" {
  description = "Target group ARN suffix per service (CloudWatch dimension)."
  value       = { for k, tg in aws_lb_target_group.this : k => tg.arn_suffix }
}
