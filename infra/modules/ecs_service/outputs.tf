output "service_name" {
  description = "Name of the ECS service."
  value       = try(aws_ecs_service.this.name, null)
}

output "task_definition_arn" {
  description = "ARN of the task definition revision."
  value       = try(aws_ecs_task_definition.this.arn, null)
}

output "log_group_name" {
  description = "Log group of the containers."
  value       = try(aws_cloudwatch_log_group.this.name, null)
}

output "task_role_arn" {
  description = "Role the application runs as."
  value       = try(aws_iam_role.task.arn, null)
}
