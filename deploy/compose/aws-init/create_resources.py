"""The shop's AWS resources on moto's server, created once when docker compose starts: the
order queue with its dead-letter queue (10 receives, then the DLQ) and the two DynamoDB
tables. What Terraform creates on AWS and chaos_lab.local.aws.create_resources creates for the lab;
the services never create them. Idempotent: a second run finds them and changes nothing.

Runs in moto's own image (it has boto3): python create_resources.py
"""

import json
import os
import sys
import time
from typing import Any

import boto3

PREFIX = os.environ.get("SHOP_RESOURCE_PREFIX", "chaos-shop")
MAX_RECEIVES = 10
TABLES = ((f"{PREFIX}-catalog", "id", "N"), (f"{PREFIX}-order-status", "order_id", "S"))


def client(service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL", "http://moto:5000"),
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    )


def main() -> int:
    sqs, dynamodb = client("sqs"), client("dynamodb")
    for attempt in range(30):  # moto is healthy before this runs; a little patience anyway
        try:
            sqs.list_queues()
            break
        except Exception as exc:  # any failure to reach it is worth a retry
            print(f"waiting for moto ({exc})", file=sys.stderr)
            time.sleep(1 + attempt * 0.1)
    dlq_url = sqs.create_queue(QueueName=f"{PREFIX}-orders-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(QueueName=f"{PREFIX}-orders", Attributes={
        "VisibilityTimeout": "30",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                     "maxReceiveCount": str(MAX_RECEIVES)}),
    })["QueueUrl"]
    print(f"queue {queue_url} (dead letters after {MAX_RECEIVES} receives: {dlq_url})")
    existing = dynamodb.list_tables()["TableNames"]
    for table, key, key_type in TABLES:
        if table not in existing:
            dynamodb.create_table(
                TableName=table, BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[{"AttributeName": key, "AttributeType": key_type}],
                KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            )
        print(f"table {table} (hash key {key}: {key_type})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
