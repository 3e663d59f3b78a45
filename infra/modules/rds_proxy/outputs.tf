output "name" {
  description = "Name of the proxy."
  value       = try(aws_db_proxy.this.name, null)
}

output "arn" {
  description = "ARN of the proxy."
  value       = try(aws_db_proxy.this.arn, null)
}

output "endpoint" {
  description = "Default (read/write) endpoint: follows the writer."
  value       = try(aws_db_proxy.this.endpoint, null)
}

output "reader_endpoint" {
  description = "READ_ONLY endpoint: the cluster's readers."
  value       = try(aws_db_proxy_endpoint.reader.endpoint, null)
}

output "target_group_name" {
  description = "Name of the proxy's target group (default)."
  value       = try(aws_db_proxy_default_target_group.this.name, null)
}

output "target_group_arn" {
  description = "ARN of the proxy's target group."
  value       = try(aws_db_proxy_default_target_group.this.arn, null)
}
