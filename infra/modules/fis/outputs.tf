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

output "db_outage_document_name" {
  description = "SSM Automation runbook of the outage."
  value       = try(aws_ssm_document.db_outage.name, null)
}

output "log_group_name" {
  description = "Log group of the experiments."
  value       = try(aws_cloudwatch_log_group.this.name, null)
}
