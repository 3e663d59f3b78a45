output "bucket" {
  description = "Name of the bucket, once its policy is in place (an ALB checks it can write there)."
  value       = try(aws_s3_bucket_policy.this.bucket, null)
}

output "arn" {
  description = "ARN of the bucket."
  value       = try(aws_s3_bucket.this.arn, null)
}
