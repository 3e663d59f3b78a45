"""The shop's AWS resources on moto's server, created once when docker compose starts: the
order queue with its dead-letter queue (10 receives, then the DLQ) and the two DynamoDB
tables, the order table with its sparse index of undecided orders. What Terraform creates on
AWS and chaos_lab.local.aws.create_resources creates for the lab; the services never create
them. Idempotent: a second run finds them and changes nothing.

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
# The order table's sparse index: only orders not decided yet carry "undecided"
# (src/shop/order_records.py; chaos_lab.local.aws.ORDER_TABLE for the lab).
UNDECIDED = {"IndexName": "undecided", "Projection": {"ProjectionType": "ALL"},
             "KeySchema": [{"AttributeName": "undecided", "KeyType": "HASH"},
                           {"AttributeName": "accepted_at", "KeyType": "RANGE"}]}
TABLES: dict[str, dict[str, Any]] = {
    f"{PREFIX}-catalog": {"AttributeDefinitions": [{"AttributeName": "id",
                                                    "AttributeType": "N"}],
                          "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}]},
    f"{PREFIX}-order-status": {
        "AttributeDefinitions": [{"AttributeName": "order_id", "AttributeType": "S"},
                                 {"AttributeName": "undecided", "AttributeType": "S"},
                                 {"AttributeName": "accepted_at", "AttributeType": "N"}],
        "KeySchema": [{"AttributeName": "order_id", "KeyType": "HASH"}],
        "GlobalSecondaryIndexes": [UNDECIDED]},
}


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
    for table, schema in TABLES.items():
        if table not in existing:
            dynamodb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST", **schema)
        indexes = [i["IndexName"] for i in schema.get("GlobalSecondaryIndexes", [])]
        print(f"table {table} (indexes: {', '.join(indexes) or 'none'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
