output "failover_template_id" {
  description = "FIS template: Aurora writer failover."
  value       = try(aws_fis_experiment_template.failover.id, null)
}

output "db_outage_template_id" {
  description = "FIS template: the proxy loses its target for db_outage_seconds."
  value       = try(aws_fis_experiment_template.db_outage.id, null)
}

output "stop_task_template_ids" {
  description = "FIS template per service: stop one of its tasks."
  value       = { for k, t in aws_fis_experiment_template.stop_task : k => t.id }
}

output "brownout_template_id" {
  description = "FIS template: the database's answers to the catalog and orders tasks delayed (null: the tasks are not opted in)."
  value       = try(aws_fis_experiment_template.brownout[0].id, null)
}

output "credential_rotation_template_id" {
  description = "FIS template: the master secret rotated now (SSM Automation)."
  value       = try(aws_fis_experiment_template.credential_rotation.id, null)
}

output "aws_outage_template_id" {
  description = "FIS template: DynamoDB cut from the private subnets while the proxy has no target."
  value       = try(aws_fis_experiment_template.aws_outage.id, null)
}

output "worker_crash_template_id" {
  description = "FIS template: every order-worker task stopped (null without the worker)."
  value       = try(aws_fis_experiment_template.worker_crash[0].id, null)
}

output "reader_loss_template_id" {
  description = "FIS template: the Aurora reader instance rebooted."
  value       = try(aws_fis_experiment_template.reader_loss.id, null)
}

output "fleet_crash_template_id" {
  description = "FIS template: every orders task stopped during a database outage."
  value       = try(aws_fis_experiment_template.fleet_crash.id, null)
}

output "aws_slow_template_id" {
  description = "FIS template: the orders tasks' DynamoDB and SQS traffic delayed (null: the tasks are not opted in)."
  value       = try(aws_fis_experiment_template.aws_slow[0].id, null)
}

output "sidecar" {
  description = "What the FIS sidecar needs: where the broker leaves its task's activation (name prefix and ARN prefix of the parameters) and the role its agent runs as (null: no task fault injection)."
  value = try({
    activation_parameter_prefix     = local.sidecar_parameter_prefix
    activation_parameter_arn_prefix = local.sidecar_parameter_arn_prefix
    managed_instance_role_name      = aws_iam_role.managed_instance[0].name
  }, null)
}

output "credential_rotation_document_name" {
  description = "SSM Automation runbook of the credential rotation."
  value       = try(aws_ssm_document.credential_rotation.name, null)
}

output "db_outage_document_name" {
  description = "SSM Automation runbook of the outage."
  value       = try(aws_ssm_document.db_outage.name, null)
}

output "log_group_name" {
  description = "Log group of the experiments."
  value       = try(aws_cloudwatch_log_group.this.name, null)
}
