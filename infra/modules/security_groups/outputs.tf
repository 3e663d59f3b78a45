output "alb_security_group_id" {
  description = "Security group of the load balancer."
  value       = try(aws_security_group.alb.id, null)
}

output "tasks_security_group_id" {
  description = "Security group of the ECS tasks."
  value       = try(aws_security_group.tasks.id, null)
}

output "proxy_security_group_id" {
  description = "Security group of RDS Proxy."
  value       = try(aws_security_group.proxy.id, null)
}

output "database_security_group_id" {
  description = "Security group of the Aurora cluster."
  value       = try(aws_security_group.database.id, null)
}
