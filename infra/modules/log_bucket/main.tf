# A bucket for what AWS services write about the shop (ALB access logs, FIS experiment
# reports): private, versioned, encrypted, TLS only, expiring on a schedule. Nothing in it is
# ever public, and nothing deletes it with terraform destroy while it holds objects.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}

data "aws_elb_service_account" "this" {
  count = var.elb_log_prefix == null ? 0 : 1
}

locals {
  account_id = data.aws_caller_identity.current.account_id
  kms        = var.kms_key_arn != null
  # Where the load balancer writes: <prefix>/AWSLogs/<account>/elasticloadbalancing/...
  elb_objects = var.elb_log_prefix == null ? null : "${aws_s3_bucket.this.arn}/${var.elb_log_prefix}/AWSLogs/${local.account_id}/*"
  elb_writers = var.elb_log_prefix == null ? {} : {
    Service = { Service = "logdelivery.elasticloadbalancing.amazonaws.com" }
    Account = { AWS = data.aws_elb_service_account.this[0].arn }
  }
}

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_18:a bucket of logs and reports written by AWS services; S3 access logs of it would need one more log bucket, and CloudTrail data events are the account's audit of who reads it
  #checkov:skip=CKV_AWS_144:logs and reports of a deployment in one region; a copy in another region is the account's backup policy, not this module's
  #checkov:skip=CKV2_AWS_62:nothing reacts to a new log object; event notifications would have no consumer
  #checkov:skip=CKV_AWS_145:the caller chooses: the FIS reports bucket passes the shop's KMS key, the ALB access-log bucket cannot (ALB log delivery writes only to SSE-S3 buckets)
  bucket        = "${var.name}-${local.account_id}-${data.aws_region.current.region}"
  force_destroy = false

  tags = var.tags
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket = aws_s3_bucket.this.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = local.kms ? "aws:kms" : "AES256"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = local.kms
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    id     = "expire"
    status = "Enabled"

    filter {}

    expiration {
      days = var.expiration_days
    }

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_expiration_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

# TLS only, for everyone; and, for an ALB log bucket, the load balancer's log delivery may
# write its own prefix of this account (the service principal in regions opened since 2022,
# the region's ELB account in the older ones: both are named).
resource "aws_s3_bucket_policy" "this" {
  bucket = aws_s3_bucket.this.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [{
        Sid       = "TlsOnly"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [aws_s3_bucket.this.arn, "${aws_s3_bucket.this.arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      }],
      [for who, principal in local.elb_writers : {
        Sid       = "ElbLogDelivery${who}"
        Effect    = "Allow"
        Principal = principal
        Action    = "s3:PutObject"
        Resource  = local.elb_objects
      }],
    )
  })

  depends_on = [aws_s3_bucket_public_access_block.this]
}
