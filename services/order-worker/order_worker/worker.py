"""The drain loop: receive buffered orders, apply them with the orders service's own
transaction (shop.orders.place_order), decide what happens to each message.

* confirmed or rejected (unknown product, no stock): record the status, delete the message;
  a business rejection is never retried;
* the database is out: leave the message for redelivery, soon (visibility back to a few
  seconds) so that the queue drains quickly once the database is back;
* a body that can never be parsed: straight to the dead-letter queue.

While the writer's breaker is not closed the worker does not receive at all: it probes the
database with a ping, so a long outage does not burn receive counts and push good orders into
the dead-letter queue. Redelivery is safe: place_order is idempotent on the order id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import suppress
from typing import Any

from shop.aws import AWS_ERRORS, OrderBuffer, QueuedOrder
from shop.db import Endpoint
from shop.errors import DatabaseNotReady, DatabaseUnavailable
from shop.metrics import WORKER_MESSAGES
from shop.orders import Order, place_order
from shop.settings import Settings

log = logging.getLogger("order_worker")

RETRY_VISIBILITY_SECONDS = 2


class OrderWorker:
    def __init__(self, settings: Settings, writer: Endpoint, sqs: Any,
                 buffer: OrderBuffer) -> None:
        assert settings.order_queue_url, "SHOP_ORDER_QUEUE_URL is required"
        self.settings = settings
        self.writer = writer
        self.sqs = sqs
        self.buffer = buffer
        self.queue_url = settings.order_queue_url
        self.dlq_url: str | None = None
        self.stopping = asyncio.Event()
        self.last_poll = time.monotonic()  # the health signal: the loop is alive

    def healthy(self) -> bool:
        """Alive if the loop went round recently (a long poll plus the slowest batch)."""
        limit = self.settings.worker_wait_seconds + 3 * self.settings.retry_budget_seconds + 10
        return time.monotonic() - self.last_poll < limit

    async def run(self) -> None:
        """Until ``stopping`` is set; in-flight messages are finished before it returns.
        ``SHOP_WORKER_POLLERS`` receive loops run side by side: one loop spends most of its
        time waiting on SQS and the database, so a backlog drains that many times faster."""
        log.info("order-worker draining %s with %d pollers", self.queue_url,
                 self.settings.worker_pollers)
        await asyncio.gather(*(self._poll() for _ in range(self.settings.worker_pollers)))
        log.info("order-worker stopped")

    async def _poll(self) -> None:
        while not self.stopping.is_set():
            self.last_poll = time.monotonic()
            try:
                if not await self.database_usable():
                    await self._pause(1.0)
                    continue
                messages = await self.receive()
                if messages:
                    await self.handle(messages)
            except AWS_ERRORS as exc:
                log.warning("queue unreachable: %s", exc)
                await self._pause(2.0)

    async def _pause(self, seconds: float) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)

    async def database_usable(self) -> bool:
        """True when the breaker is closed; otherwise a ping is the breaker's trial call."""
        if not self.writer.ready.is_set():
            return False
        breaker = self.writer.breaker
        if breaker is None or breaker.state == "closed":
            return True
        try:
            await self.writer.run(lambda conn: conn.fetchval("SELECT 1"))
        except (DatabaseUnavailable, DatabaseNotReady):
            return False
        return True

    async def receive(self) -> list[dict[str, Any]]:
        response = await self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.settings.worker_concurrency,
            WaitTimeSeconds=self.settings.worker_wait_seconds,
            VisibilityTimeout=self.settings.worker_visibility_timeout,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    async def handle(self, messages: list[dict[str, Any]]) -> list[str]:
        """Apply a batch, its orders side by side; then one call records every decision and
        one deletes their messages (three AWS calls a batch, not two per order). Returns the
        outcomes (also counted in metrics). One message failing is that message's outcome
        ("error": left for redelivery, and the redrive policy's DLQ after ten), never its
        batch's. If recording fails nothing is deleted: the messages come back and
        place_order replays them."""
        results = await asyncio.gather(*(self.apply(m) for m in messages),
                                       return_exceptions=True)
        outcomes: list[Order | str] = []
        for message, result in zip(messages, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result  # cancelled: stopping
                log.error("message %s failed: %s: %s", message.get("MessageId"),
                          type(result).__name__, result)
                result = "error"
            outcomes.append(result)
        retry = [m for m, r in zip(messages, outcomes, strict=True) if r == "retry"]
        if retry:
            # Soon, so that the queue drains quickly once the database is back.
            await self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"],
                 "VisibilityTimeout": RETRY_VISIBILITY_SECONDS} for i, m in enumerate(retry)])
        decided = [(m, r) for m, r in zip(messages, outcomes, strict=True)
                   if isinstance(r, Order)]
        if decided:
            await self.buffer.record([order for _, order in decided])
            await self._delete([m for m, _ in decided])
            for _, order in decided:
                log.info("order %s %s%s", order.order_id, order.status,
                         f" ({order.reason})" if order.reason else "")
        names = [r.status if isinstance(r, Order) else r for r in outcomes]
        for name in names:
            WORKER_MESSAGES.labels(outcome=name).inc()
        return names

    async def apply(self, message: dict[str, Any]) -> Order | str:
        """One message: the order decided, "retry" (database out), or what became of a
        message that can never succeed."""
        try:
            order = QueuedOrder.parse(message["Body"])
        except (ValueError, KeyError, TypeError) as exc:
            return await self.dead_letter(message, f"unparseable: {exc}")
        try:
            return await self.writer.run(
                lambda conn: place_order(conn, order.order_id, order.product_id, order.quantity)
            )
        except (DatabaseUnavailable, DatabaseNotReady) as exc:
            log.info("order %s: database out (%s), left for redelivery", order.order_id, exc)
            return "retry"

    async def _delete(self, messages: list[dict[str, Any]]) -> None:
        response = await self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
        for failed in response.get("Failed", []):
            # Delivered again later and replayed by place_order: harmless, but worth a line.
            log.warning("could not delete message %s: %s", failed.get("Id"),
                        failed.get("Message"))

    async def dead_letter(self, message: dict[str, Any], reason: str) -> str:
        """Move a message that can never succeed to the DLQ now, not after ten receives."""
        dlq = await self.dead_letter_queue()
        if dlq is None:
            log.error("message %s %s; no DLQ found, leaving it to the redrive policy",
                      message.get("MessageId"), reason)
            return "malformed"
        await self.sqs.send_message(
            QueueUrl=dlq, MessageBody=message["Body"],
            MessageAttributes={"reason": {"DataType": "String", "StringValue": reason[:256]}},
        )
        await self.sqs.delete_message(QueueUrl=self.queue_url,
                                      ReceiptHandle=message["ReceiptHandle"])
        log.error("message %s %s: moved to the dead-letter queue", message.get("MessageId"),
                  reason)
        return "dead-lettered"

    async def dead_letter_queue(self) -> str | None:
        """The DLQ named by the queue's redrive policy (no second setting to keep in step)."""
        if self.dlq_url is None:
            self.dlq_url = await dead_letter_queue_of(self.sqs, self.queue_url)
        return self.dlq_url


async def dead_letter_queue_of(sqs: Any, queue_url: str) -> str | None:
    attributes = await sqs.get_queue_attributes(QueueUrl=queue_url,
                                                AttributeNames=["RedrivePolicy"])
    policy = attributes.get("Attributes", {}).get("RedrivePolicy")
    if not policy:
        return None
    arn = json.loads(policy)["deadLetterTargetArn"]
    account, name = arn.split(":")[4], arn.split(":")[5]
    response = await sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)
    url: str = response["QueueUrl"]
    return url


async def redrive(sqs: Any, queue_url: str) -> int:
    """Move every message of the DLQ back to the main queue (an operator's command, after the
    cause was fixed). Returns how many moved."""
    dlq = await dead_letter_queue_of(sqs, queue_url)
    if dlq is None:
        raise RuntimeError(f"{queue_url} has no redrive policy naming a dead-letter queue")
    moved = 0
    while True:
        response = await sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10,
                                             WaitTimeSeconds=1)
        messages = response.get("Messages", [])
        if not messages:
            return moved
        for message in messages:
            await sqs.send_message(QueueUrl=queue_url, MessageBody=message["Body"])
            await sqs.delete_message(QueueUrl=dlq, ReceiptHandle=message["ReceiptHandle"])
            moved += 1
