output "queue_url" {
  description = "URL of the order queue (SHOP_ORDER_QUEUE_URL)."
  value       = try(aws_sqs_queue.orders.url, null)
}

output "queue_arn" {
  description = "ARN of the order queue."
  value       = try(aws_sqs_queue.orders.arn, null)
}

output "queue_name" {
  description = "Name of the order queue."
  value       = try(aws_sqs_queue.orders.name, null)
}

output "dlq_url" {
  description = "URL of the dead-letter queue."
  value       = try(aws_sqs_queue.dlq.url, null)
}

output "dlq_arn" {
  description = "ARN of the dead-letter queue."
  value       = try(aws_sqs_queue.dlq.arn, null)
}

output "dlq_name" {
  description = "Name of the dead-letter queue."
  value       = try(aws_sqs_queue.dlq.name, null)
}

output "product_cache_table_name" {
  description = "DynamoDB copy of the catalog (SHOP_PRODUCT_CACHE_TABLE)."
  value       = try(aws_dynamodb_table.product_cache.name, null)
}

output "product_cache_table_arn" {
  description = "ARN of the catalog copy."
  value       = try(aws_dynamodb_table.product_cache.arn, null)
}

output "order_status_table_name" {
  description = "DynamoDB store of record of the orders accepted while the database is out (SHOP_ORDER_STATUS_TABLE)."
  value       = try(aws_dynamodb_table.order_status.name, null)
}

output "order_status_table_arn" {
  description = "ARN of the order status table."
  value       = try(aws_dynamodb_table.order_status.arn, null)
}

output "order_status_undecided_index_name" {
  description = "Sparse index of the orders still to decide (hash key undecided, a shard name; range key accepted_at)."
  value       = try(local.undecided.name, null)
}

output "order_status_undecided_index_arn" {
  description = "ARN of the undecided index (the worker's dynamodb:Query is on this, not on the table)."
  value       = try(format("%s/index/%s", aws_dynamodb_table.order_status.arn, local.undecided.name), null)
}
