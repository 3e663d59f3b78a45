output "cluster_identifier" {
  description = "Identifier of the cluster."
  value       = try(aws_rds_cluster.this.cluster_identifier, null)
}

output "cluster_arn" {
  description = "ARN of the cluster."
  value       = try(aws_rds_cluster.this.arn, null)
}

output "writer_endpoint" {
  description = "Cluster (writer) endpoint: follows the writer across a failover."
  value       = try(aws_rds_cluster.this.endpoint, null)
}

output "reader_endpoint" {
  description = "Reader endpoint of the cluster."
  value       = try(aws_rds_cluster.this.reader_endpoint, null)
}

output "port" {
  description = "PostgreSQL port."
  value       = try(aws_rds_cluster.this.port, null)
}

output "master_user_secret_arn" {
  description = "Secrets Manager secret holding the master user's username and password (RDS rotates it): the migrate step's, never a service's."
  value       = try(aws_rds_cluster.this.master_user_secret[0].secret_arn, null)
}

output "database_name" {
  description = "The shop's database."
  value       = try(aws_rds_cluster.this.database_name, null)
}

output "master_username" {
  description = "The master user, owner of the schema: it runs the migrations only."
  value       = try(aws_rds_cluster.this.master_username, null)
}

output "app_role_secret_arns" {
  description = "Per app role: the ARN of its secret (username and password), once the secret has its value."
  value       = try({ for role, version in aws_secretsmanager_secret_version.app_role : role => version.arn }, {})
}

output "instance_arns" {
  description = "ARNs of the cluster's instances (the reader-loss template reboots the tagged one; either may be the reader after a failover)."
  value       = try([aws_rds_cluster_instance.writer.arn, aws_rds_cluster_instance.reader.arn], [])
}
