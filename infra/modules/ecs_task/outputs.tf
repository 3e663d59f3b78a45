output "task_definition_arn" {
  description = "ARN of the task definition revision (aws ecs run-task --task-definition)."
  value       = try(aws_ecs_task_definition.this.arn, null)
}

output "family" {
  description = "Family of the task definition (its latest revision)."
  value       = try(aws_ecs_task_definition.this.family, null)
}

output "task_role_arn" {
  description = "Role the command runs as."
  value       = try(aws_iam_role.task.arn, null)
}

output "log_group_name" {
  description = "Log group of the container."
  value       = try(aws_cloudwatch_log_group.this.name, null)
}
