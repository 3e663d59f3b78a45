"""The shop's AWS resources on an emulator (moto's server): what Terraform creates on AWS and
docker compose's init creates locally. The services themselves never create them."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from chaos_lab.processes import port_open, spawn, stop_process, wait_until
from shop.order_records import SHARDS

MAX_RECEIVES = 10  # then the dead-letter queue, as in the reference

# The order table (shop.order_records): hash key order_id, and the sparse index of the orders
# not decided yet (only pending items carry "undecided"), oldest first in each shard.
ORDER_TABLE: dict[str, Any] = {
    "BillingMode": "PAY_PER_REQUEST",
    "AttributeDefinitions": [{"AttributeName": "order_id", "AttributeType": "S"},
                             {"AttributeName": "undecided", "AttributeType": "S"},
                             {"AttributeName": "accepted_at", "AttributeType": "N"}],
    "KeySchema": [{"AttributeName": "order_id", "KeyType": "HASH"}],
    "GlobalSecondaryIndexes": [{
        "IndexName": "undecided",
        "KeySchema": [{"AttributeName": "undecided", "KeyType": "HASH"},
                      {"AttributeName": "accepted_at", "KeyType": "RANGE"}],
        "Projection": {"ProjectionType": "ALL"},
    }],
}


def client(service: str, endpoint_url: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint_url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(connect_timeout=5, read_timeout=10,
                                      retries={"max_attempts": 3, "mode": "standard"}))


@dataclass
class ShopResources:
    queue_url: str
    dlq_url: str
    cache_table: str
    status_table: str

    def settings(self, endpoint_url: str) -> dict[str, str]:
        """The environment the services read to use these resources."""
        return {
            "SHOP_ORDER_QUEUE_URL": self.queue_url,
            "SHOP_PRODUCT_CACHE_TABLE": self.cache_table,
            "SHOP_ORDER_STATUS_TABLE": self.status_table,
            "AWS_ENDPOINT_URL": endpoint_url,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }


def create_resources(endpoint_url: str, prefix: str = "chaos-shop") -> ShopResources:
    sqs = client("sqs", endpoint_url)
    dynamodb = client("dynamodb", endpoint_url)
    dlq_url = sqs.create_queue(QueueName=f"{prefix}-orders-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(QueueName=f"{prefix}-orders", Attributes={
        "VisibilityTimeout": "30",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                     "maxReceiveCount": str(MAX_RECEIVES)}),
    })["QueueUrl"]
    existing = dynamodb.list_tables()["TableNames"]
    if f"{prefix}-catalog" not in existing:
        dynamodb.create_table(
            TableName=f"{prefix}-catalog", BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "N"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        )
    if f"{prefix}-order-status" not in existing:
        dynamodb.create_table(**ORDER_TABLE, TableName=f"{prefix}-order-status")
    return ShopResources(queue_url, dlq_url, f"{prefix}-catalog", f"{prefix}-order-status")


def queue_depth(endpoint_url: str, queue_url: str) -> int:
    """Visible plus in-flight messages."""
    attributes = client("sqs", endpoint_url).get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


def undecided_orders(endpoint_url: str, table: str) -> int:
    """Orders in the order table not decided yet (its sparse index, every shard)."""
    dynamodb = client("dynamodb", endpoint_url)
    return sum(dynamodb.query(TableName=table, IndexName="undecided", Select="COUNT",
                              KeyConditionExpression="undecided = :shard",
                              ExpressionAttributeValues={":shard": {"S": str(shard)}})["Count"]
               for shard in range(SHARDS))


def purge(endpoint_url: str, resources: ShopResources) -> None:
    """Empty the queues and the tables (the lab's reset)."""
    sqs = client("sqs", endpoint_url)
    for url in (resources.queue_url, resources.dlq_url):
        # Receive and delete rather than PurgeQueue, which SQS allows once a minute.
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                              VisibilityTimeout=0).get("Messages"):
            sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(messages)])
    dynamodb = client("dynamodb", endpoint_url)
    for table, key in ((resources.cache_table, "id"), (resources.status_table, "order_id")):
        for item in dynamodb.scan(TableName=table, ProjectionExpression=key)["Items"]:
            dynamodb.delete_item(TableName=table, Key={key: item[key]})


class MotoServer:
    """moto's server as a process of the lab (the tests use moto's ThreadedMotoServer)."""

    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc is not None else 0

    def start(self) -> None:
        self._proc = spawn([sys.executable, "-m", "chaos_lab.local.moto_server", "-H", "127.0.0.1",
                            "-p", str(self.port)], self.log)
        wait_until(lambda: port_open(self.port), f"moto on port {self.port}")

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None
