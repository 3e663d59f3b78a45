"""The shop's two fallbacks on AWS (aioboto3): the catalog copy and the order buffer.

``ProductCache`` keeps a DynamoDB copy of the catalog, written from successful database reads by
a background task (never one write per request), and read when the reader's breaker is open.
``OrderBuffer`` puts orders on SQS while the writer is out, and keeps their status in a
DynamoDB table so that a customer who got 202 can follow the order while the database is down.
The services never create these resources; a missing one shows in /health/deep and the logs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from shop.errors import FallbackUnavailable
from shop.metrics import CACHE_READS, CACHE_REFRESHES, FALLBACKS
from shop.orders import Order
from shop.settings import Settings

log = logging.getLogger(__name__)

AWS_ERRORS = (BotoCoreError, ClientError, OSError, asyncio.TimeoutError)
MAX_PRODUCT_ID = 2**31 - 1
MAX_QUANTITY = 100


def client_config(settings: Settings, long_poll_seconds: float = 0) -> AioConfig:
    """Every AWS call is bounded: connect and read timeouts, one retry at most (the
    Builders' Library rule: retry at one layer only, and the caller already has a fallback).
    A client that long-polls waits that long on top of the read timeout."""
    return AioConfig(
        connect_timeout=settings.aws_timeout,
        read_timeout=settings.aws_timeout + long_poll_seconds,
        retries={"max_attempts": 2, "mode": "standard"},
    )


async def open_clients(stack: AsyncExitStack, settings: Settings, *names: str,
                       long_poll_seconds: float = 0) -> list[Any]:
    """aioboto3 clients for the process's lifetime (closed with ``stack``)."""
    session = aioboto3.Session()
    config = client_config(settings, long_poll_seconds)
    return [await stack.enter_async_context(session.client(name, config=config))
            for name in names]


class UnprocessedWrites(BotoCoreError):  # type: ignore[misc]
    fmt = "DynamoDB left {count} writes to {table} unprocessed"


async def batch_put(dynamodb: Any, table: str, items: list[dict[str, Any]],
                    attempts: int = 4) -> None:
    """Put ``items``, 25 to a BatchWriteItem call (its limit). What DynamoDB leaves unprocessed
    (throttling) is sent again after a short backoff; still unprocessed after ``attempts``
    calls is an error (``UnprocessedWrites``, one of ``AWS_ERRORS``)."""
    for start in range(0, len(items), 25):
        pending = {table: [{"PutRequest": {"Item": item}} for item in items[start:start + 25]]}
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(0.05 * 2 ** attempt)
            response = await dynamodb.batch_write_item(RequestItems=pending)
            pending = response.get("UnprocessedItems") or {}
            if not pending:
                break
        else:
            raise UnprocessedWrites(count=len(pending[table]), table=table)


def _public(product: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in product.items() if key != "cached_at"}


class ProductCache:
    """The DynamoDB copy of the catalog: one item per product, hash key ``id`` (Number)."""

    def __init__(self, dynamodb: Any, table: str, refresh_seconds: float) -> None:
        self.dynamodb = dynamodb
        self.table = table
        self.refresh_seconds = refresh_seconds
        self._latest: dict[int, dict[str, Any]] = {}
        self._dirty = asyncio.Event()
        self._memo: tuple[float, list[dict[str, Any]]] | None = None
        self._scan_lock = asyncio.Lock()

    def offer(self, products: list[dict[str, Any]]) -> None:
        """Called with every successful database read; costs a dict update, no I/O."""
        for product in products:
            self._latest[product["id"]] = product
        self._dirty.set()

    async def keep_fresh(self) -> None:
        """Background task: write the latest products at most every ``refresh_seconds``."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            snapshot = list(self._latest.values())
            try:
                await self.write(snapshot)
                CACHE_REFRESHES.labels(outcome="ok").inc()
            except AWS_ERRORS as exc:
                CACHE_REFRESHES.labels(outcome="error").inc()
                log.warning("catalog cache refresh failed: %s", exc)
                self._dirty.set()  # try again next round
            await asyncio.sleep(self.refresh_seconds)

    async def write(self, products: list[dict[str, Any]]) -> None:
        now = str(round(time.time(), 3))
        await batch_put(self.dynamodb, self.table, [
            {"id": {"N": str(p["id"])}, "name": {"S": p["name"]},
             "price": {"N": str(p["price"])}, "stock": {"N": str(p["stock"])},
             "cached_at": {"N": str(now)}}
            for p in products
        ])

    async def read_all(self) -> tuple[list[dict[str, Any]], float | None]:
        """All cached products, and the age of the oldest copy in seconds."""
        snapshot = await self._snapshot()
        if not snapshot:
            return [], None
        oldest = min(p["cached_at"] for p in snapshot)
        return [_public(p) for p in snapshot], round(time.time() - oldest, 1)

    async def _snapshot(self) -> list[dict[str, Any]]:
        """The table, memoised for a second and scanned by one caller at a time: while the
        breaker is open every read lands here, and one scan a second is plenty for a copy that
        changes only when the database is back. When DynamoDB does not answer either, the copy
        last read stays in use (its age keeps growing in the answers); with none, it raises.
        """
        if (memo := self._fresh_memo()) is not None:
            return memo
        async with self._scan_lock:
            if (memo := self._fresh_memo()) is not None:
                return memo  # another caller scanned while this one waited
            try:
                items = await self._scan()
            except AWS_ERRORS as exc:
                if self._memo is None:
                    raise
                log.warning("catalog cache unreachable (%s): serving the copy read %.0f s ago",
                            exc, time.monotonic() - self._memo[0])
                CACHE_READS.labels(outcome="stale").inc()
                self._memo = (time.monotonic(), self._memo[1])  # try DynamoDB again in 1 s
                return self._memo[1]
            CACHE_READS.labels(outcome="ok").inc()
            self._memo = (time.monotonic(),
                          sorted((self._product(i) for i in items), key=lambda p: p["id"]))
            return self._memo[1]

    def _fresh_memo(self) -> list[dict[str, Any]] | None:
        if self._memo is not None and time.monotonic() - self._memo[0] <= 1.0:
            return self._memo[1]
        return None

    async def _scan(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": self.table}
        while True:
            page = await self.dynamodb.scan(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    @staticmethod
    def _product(item: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": int(item["id"]["N"]),
            "name": item["name"]["S"],
            "price": float(item["price"]["N"]),
            "stock": int(item["stock"]["N"]),
            "cached_at": float(item["cached_at"]["N"]),
        }

    async def check(self) -> str:
        try:
            await self.dynamodb.describe_table(TableName=self.table)
        except AWS_ERRORS as exc:
            return f"error: {exc}"
        return "ok"


@dataclass(frozen=True)
class QueuedOrder:
    """The SQS message body of a buffered order."""

    order_id: uuid.UUID
    product_id: int
    quantity: int

    def body(self) -> str:
        return json.dumps({"order_id": str(self.order_id), "product_id": self.product_id,
                           "quantity": self.quantity})

    @classmethod
    def parse(cls, body: str) -> QueuedOrder:
        """Raises ValueError (or KeyError, TypeError) for a message that can never succeed."""
        data = json.loads(body)
        product_id, quantity = data["product_id"], data["quantity"]
        # The API's bounds (a product id is a PostgreSQL integer): outside them, never.
        if not (type(product_id) is int and 0 < product_id <= MAX_PRODUCT_ID
                and type(quantity) is int and 0 < quantity <= MAX_QUANTITY):
            raise ValueError(f"bad product_id or quantity in {body[:200]!r}")
        return cls(uuid.UUID(data["order_id"]), product_id, quantity)


def _status_item(order_id: uuid.UUID, product_id: int, quantity: int, status: str,
                 reason: str | None = None) -> dict[str, Any]:
    return {
        "order_id": {"S": str(order_id)},
        "product_id": {"N": str(product_id)},
        "quantity": {"N": str(quantity)},
        "status": {"S": status},
        "reason": {"S": reason or ""},
        "updated_at": {"N": str(round(time.time(), 3))},
    }


class OrderBuffer:
    """Orders that could not reach the database: on SQS, their status in DynamoDB."""

    def __init__(self, sqs: Any, dynamodb: Any, queue_url: str, status_table: str) -> None:
        self.sqs = sqs
        self.dynamodb = dynamodb
        self.queue_url = queue_url
        self.status_table = status_table

    async def enqueue(self, order: QueuedOrder) -> None:
        """Durable before the customer hears "accepted": the pending status (so that a 202 can
        be looked up) and the message, side by side, so the customer waits for the slower
        of the two calls, not for both. No message, no 202: the status is withdrawn and the
        customer gets a 503. A message whose status could not be written is still an
        accepted order (the worker applies it and records the outcome): 202, logged and
        counted (``shop_fallbacks_total{kind="order_status_unwritten"}``).

        The worker may decide the order before the pending status lands: the status put is
        conditional, so it never overwrites the decision."""
        outcomes: tuple[Any, ...] = await asyncio.gather(
            self._put_pending(order),
            self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=order.body()),
            return_exceptions=True,
        )
        wrote, sent = outcomes
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                raise outcome  # cancelled: the caller goes away, nothing to answer
        if isinstance(sent, Exception):
            # Withdraw whatever this call may have written (a put that failed may still have
            # landed), never the status of an earlier request with the same Idempotency-Key.
            if wrote is not False:
                await self._withdraw(order)
            if not isinstance(sent, AWS_ERRORS):
                raise sent
            log.error("order %s could not be queued: %s", order.order_id, sent)
            raise FallbackUnavailable("database unavailable, order queue unreachable") from sent
        if isinstance(wrote, Exception):
            log.warning("order %s queued, but its pending status was not written: %s",
                        order.order_id, wrote)
            FALLBACKS.labels(kind="order_status_unwritten").inc()

    async def _put_pending(self, order: QueuedOrder) -> bool:
        """False when the order already has a status (a repeated Idempotency-Key): it is left
        as it is, pending or decided."""
        try:
            await self.dynamodb.put_item(
                TableName=self.status_table,
                Item=_status_item(order.order_id, order.product_id, order.quantity, "pending"),
                ConditionExpression="attribute_not_exists(order_id)",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        return True

    async def _withdraw(self, order: QueuedOrder) -> None:
        try:
            await self.dynamodb.delete_item(
                TableName=self.status_table, Key={"order_id": {"S": str(order.order_id)}},
                ConditionExpression="#s = :pending",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":pending": {"S": "pending"}},
            )
        except AWS_ERRORS as exc:
            log.warning("could not withdraw the status of order %s: %s", order.order_id, exc)

    async def record(self, orders: list[Order]) -> None:
        """The worker's decisions, so that GET /orders sees them even if the database goes
        again; one call for a whole batch. The same order twice in a batch (SQS delivers at
        least once) is one item: DynamoDB refuses a batch with a key in it twice."""
        once = {o.order_id: o for o in orders}.values()
        await batch_put(self.dynamodb, self.status_table, [
            _status_item(o.order_id, o.product_id, o.quantity, o.status, o.reason) for o in once
        ])

    async def status(self, order_id: uuid.UUID) -> Order | None:
        response = await self.dynamodb.get_item(
            TableName=self.status_table, Key={"order_id": {"S": str(order_id)}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        if item is None:
            return None
        return Order(
            order_id=order_id,
            product_id=int(item["product_id"]["N"]),
            quantity=int(item["quantity"]["N"]),
            status=item["status"]["S"],
            reason=(item.get("reason", {}).get("S") or None),
        )

    async def check(self) -> dict[str, str]:
        result = {}
        try:
            await self.sqs.get_queue_attributes(QueueUrl=self.queue_url,
                                                AttributeNames=["QueueArn"])
            result["order_queue"] = "ok"
        except AWS_ERRORS as exc:
            result["order_queue"] = f"error: {exc}"
        try:
            await self.dynamodb.describe_table(TableName=self.status_table)
            result["order_status_table"] = "ok"
        except AWS_ERRORS as exc:
            result["order_status_table"] = f"error: {exc}"
        return result

    async def mark_failed(self, order_id: uuid.UUID, reason: str, product_id: int = 0,
                          quantity: int = 0) -> bool:
        """The final status of an order whose message was dead-lettered: ``failed``, with a
        reason. Conditional: only an order with no status or ``pending`` becomes failed, never
        a decided one (the worker may have confirmed a copy of the same order). Product and
        quantity fill an item that does not exist yet (0 when the message had none); the
        pending status the API wrote keeps its own. Returns False when the order already had
        a final status (failed included), so the caller logs and counts each failure once."""
        try:
            await self.dynamodb.update_item(
                TableName=self.status_table, Key={"order_id": {"S": str(order_id)}},
                UpdateExpression="SET #s = :failed, #r = :reason, #u = :now,"
                                 " #p = if_not_exists(#p, :product), #q = if_not_exists(#q, :qty)",
                ConditionExpression="attribute_not_exists(#s) OR #s = :pending",
                ExpressionAttributeNames={"#s": "status", "#r": "reason", "#u": "updated_at",
                                          "#p": "product_id", "#q": "quantity"},
                ExpressionAttributeValues={
                    ":failed": {"S": "failed"}, ":pending": {"S": "pending"},
                    ":reason": {"S": reason}, ":now": {"N": str(round(time.time(), 3))},
                    ":product": {"N": str(product_id)}, ":qty": {"N": str(quantity)},
                },
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        return True

    async def reopen(self, order_id: uuid.UUID) -> bool:
        """A failed order back to ``pending`` (its message was redriven to the queue).
        Conditional: only from failed, so a decision the worker already recorded stays.
        Returns whether it changed."""
        try:
            await self.dynamodb.update_item(
                TableName=self.status_table, Key={"order_id": {"S": str(order_id)}},
                UpdateExpression="SET #s = :pending, #r = :none, #u = :now",
                ConditionExpression="#s = :failed",
                ExpressionAttributeNames={"#s": "status", "#r": "reason", "#u": "updated_at"},
                ExpressionAttributeValues={
                    ":failed": {"S": "failed"}, ":pending": {"S": "pending"},
                    ":none": {"S": ""}, ":now": {"N": str(round(time.time(), 3))},
                },
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        return True
