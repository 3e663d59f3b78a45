# The order buffer (SQS queue + dead-letter queue) and the two DynamoDB tables of the
# degradation path: the catalog's copy and the order status table, the store of record of the
# orders accepted while the database is out (the queue's message only wakes the worker up).

locals {
  # The sparse index of the orders still to decide (order_status).
  undecided = { name = "undecided", hash_key = "undecided", range_key = "accepted_at" }
}

resource "aws_sqs_queue" "dlq" {
  name                      = "${var.name}-orders-dlq"
  message_retention_seconds = 1209600 # 14 days: time to find the cause and redrive
  kms_master_key_id         = var.kms_key_arn

  tags = var.tags
}

resource "aws_sqs_queue" "orders" {
  name = "${var.name}-orders"
  # Longer than the worker's own visibility timeout (it sets 30 s on every receive): a
  # message received by a worker that dies reappears only after this.
  visibility_timeout_seconds = var.visibility_timeout_seconds
  message_retention_seconds  = var.message_retention_seconds
  receive_wait_time_seconds  = 5
  kms_master_key_id          = var.kms_key_arn

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.max_receive_count
  })

  tags = var.tags
}

# Only the order queue may dead-letter into the DLQ.
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.orders.arn]
  })
}

resource "aws_dynamodb_table" "product_cache" {
  name                        = "${var.name}-catalog"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "id"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "id"
    type = "N"
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }

  point_in_time_recovery {
    enabled = true
  }

  tags = var.tags
}

# The store of record of every order accepted while the database is out, until the worker has
# decided it (placed or refused). Such an order carries `undecided` (a shard name, "0" to "7")
# and `accepted_at` (epoch milliseconds) while it waits; the decision removes `undecided`, so
# the `undecided` index is sparse: it holds the pending orders only, oldest first per shard,
# and the worker queries it shard by shard instead of scanning the table.
resource "aws_dynamodb_table" "order_status" {
  name                        = "${var.name}-order-status"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "order_id"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "order_id"
    type = "S"
  }

  attribute {
    name = local.undecided.hash_key
    type = "S"
  }

  attribute {
    name = local.undecided.range_key
    type = "N"
  }

  global_secondary_index {
    name            = local.undecided.name
    projection_type = "ALL"

    key_schema {
      attribute_name = local.undecided.hash_key
      key_type       = "HASH"
    }

    key_schema {
      attribute_name = local.undecided.range_key
      key_type       = "RANGE"
    }
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }

  point_in_time_recovery {
    enabled = true
  }

  tags = var.tags
}
