output "template_ids" {
  description = "FIS experiment template per name: the lab's faults (failover, db-outage, ... as deployed) and stop-task-<service>."
  value       = { for name, template in aws_fis_experiment_template.this : name => template.id }
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
