# What `chaos-shop experiment run ... --target aws` reads (terraform output -json).

output "alb_url" {
  description = "The shop's entry: /products and /orders."
  value       = local.alb_url
}

output "enable_proxy" {
  description = "The deployed value of the enable_proxy switch."
  value       = var.enable_proxy
}

output "enable_degradation" {
  description = "The deployed value of the enable_degradation switch."
  value       = var.enable_degradation
}

output "region" {
  description = "Region of the deployment."
  value       = var.region
}

output "fis_template_ids" {
  description = "FIS experiment template per fault of the lab as deployed (failover, db-outage, credential-rotation, aws-outage, reader-loss, fleet-crash; worker-crash with enable_degradation; brownout and aws-slow in a chaos deployment) and stop-task-<service>."
  value       = try(module.fis.template_ids, {})
}

output "fis_report_bucket" {
  description = "S3 bucket of the FIS experiment reports (fis-reports/<template>/...)."
  value       = try(module.fis_reports.bucket, null)
}

output "fis_db_outage_seconds" {
  description = "How long the db-outage template holds the outage."
  value       = var.db_outage_seconds
}

output "fis_brownout_seconds" {
  description = "How long the brownout template delays the database's answers."
  value       = var.brownout_seconds
}

output "fis_aws_slow_seconds" {
  description = "How long the aws-slow template delays the orders tasks' AWS traffic."
  value       = var.aws_slow_seconds
}

output "order_queue_url" {
  description = "URL of the order queue."
  value       = try(module.messaging.queue_url, null)
}

output "order_dlq_url" {
  description = "URL of the order dead-letter queue."
  value       = try(module.messaging.dlq_url, null)
}

output "cluster_writer_endpoint" {
  description = "Aurora cluster (writer) endpoint."
  value       = try(module.aurora.writer_endpoint, null)
}

output "cluster_reader_endpoint" {
  description = "Aurora reader endpoint."
  value       = try(module.aurora.reader_endpoint, null)
}

output "proxy_endpoint" {
  description = "RDS Proxy default (writer) endpoint."
  value       = try(module.rds_proxy.endpoint, null)
}

output "proxy_reader_endpoint" {
  description = "RDS Proxy READ_ONLY endpoint."
  value       = try(module.rds_proxy.reader_endpoint, null)
}

output "database_secret_arn" {
  description = "Secrets Manager secret with the master user (the schema's owner) and its password, rotated by RDS (the ARN, not the password); only the migrate task's role may read it."
  value       = try(module.aurora.master_user_secret_arn, null)
}

output "database_role_secret_arns" {
  description = "Per app role (shop_orders, shop_catalog): its Secrets Manager secret, username and password (the ARNs, not the passwords)."
  value       = try(module.aurora.app_role_secret_arns, {})
}

output "api_key_secret_arn" {
  description = "Secrets Manager secret that signs the clients' API keys (the orders tasks' SHOP_API_KEY_SECRET; the ARN, not the value); null with require_api_keys = false. A client's key: SHOP_API_KEY_SECRET=<its value> python -m shop.clients <client> (docs/aws.md, API keys)."
  value       = try(aws_secretsmanager_secret.api_key[0].arn, null)
}

output "ecr_repositories" {
  description = "Per image: the ECR repository to push to, the Dockerfile to build and its build context (the repository root for the services, infra/fis-sidecar for the chaos deployment's sidecar)."
  value = {
    for name, image in local.images : name => {
      url        = try(module.ecr.repository_urls[name], null)
      dockerfile = image.dockerfile
      context    = image.context
    }
  }
}

output "ecs_cluster_name" {
  description = "Name of the ECS cluster."
  value       = try(aws_ecs_cluster.this.name, null)
}

output "migrate_run_task" {
  description = "What `aws ecs run-task` needs to run the migrations (the one-shot migrate task) on deploy: cluster, task definition, subnets and security group (docs/aws.md, Deploy)."
  value = {
    cluster         = try(aws_ecs_cluster.this.name, null)
    task_definition = try(module.migrate.task_definition_arn, null)
    subnets         = try(module.network.private_subnet_ids, [])
    security_groups = try([module.security_groups.tasks_security_group_id], [])
    log_group       = try(module.migrate.log_group_name, null)
  }
}

output "ecs_service_names" {
  description = "Per deployed service: its ECS service name (rolling-deploy forces a new deployment of orders)."
  value       = { for name, service in module.service : name => service.service_name }
}

output "dashboard_name" {
  description = "CloudWatch dashboard of the experiments."
  value       = try(module.observability.dashboard_name, null)
}

output "alb_5xx_alarm_name" {
  description = "The customer-impact alarm every FIS template stops on."
  value       = try(module.observability.alb_5xx_alarm_name, null)
}
