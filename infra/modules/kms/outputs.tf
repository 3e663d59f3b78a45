output "key_arn" {
  description = "ARN of the key."
  value       = try(aws_kms_key.this.arn, null)
}

output "key_id" {
  description = "ID of the key."
  value       = try(aws_kms_key.this.key_id, null)
}
