"""The order queue: wake-ups for the worker, not orders.

An order accepted while the database is out is its record in the order table
(``shop.order_records``). The message the orders service sends afterwards only tells the
worker to come and apply it now rather than at its next sweep: it carries the order id (and,
for people reading the queue, what the order is). Sent in the background after the answer,
bounded, at most ``MAX_IN_FLIGHT`` at a time; one that is lost, refused or never sent costs a
sweep's delay, never the order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from shop.aws import AWS_ERRORS, AwsCalls, NotSent
from shop.breaker import Breaker
from shop.metrics import WAKE_UPS
from shop.orders import MAX_IDEMPOTENCY_KEY, MAX_PRODUCT_ID, MAX_QUANTITY, OrderRequest

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 100  # wake-ups being sent at once; beyond, they are skipped (the sweep)


@dataclass(frozen=True)
class WakeUp:
    """A message on the order queue. ``request`` is the whole order when the message carries
    it (every message does; a message with the order id alone is valid too)."""

    order_id: uuid.UUID
    request: OrderRequest | None = None

    @staticmethod
    def body(request: OrderRequest) -> str:
        data: dict[str, Any] = {"order_id": str(request.order_id),
                                "product_id": request.product_id, "quantity": request.quantity}
        if request.idempotency_key is not None:
            data["idempotency_key"] = request.idempotency_key
        return json.dumps(data)

    @classmethod
    def parse(cls, body: str) -> WakeUp:
        """Raises ValueError (or KeyError, TypeError) for a message that can never be used."""
        data = json.loads(body)
        order_id = uuid.UUID(data["order_id"])
        if "product_id" not in data and "quantity" not in data:
            return cls(order_id)
        product_id, quantity = data["product_id"], data["quantity"]
        key = data.get("idempotency_key")
        # The API's bounds (a product id is a PostgreSQL integer): outside them, never.
        if not (type(product_id) is int and 0 < product_id <= MAX_PRODUCT_ID
                and type(quantity) is int and 0 < quantity <= MAX_QUANTITY
                and (key is None or (type(key) is str
                                     and 0 < len(key) <= 2 * MAX_IDEMPOTENCY_KEY))):
            raise ValueError(f"bad product_id, quantity or idempotency_key in {body[:200]!r}")
        return cls(order_id, OrderRequest(order_id, product_id, quantity, key))


class OrderQueue:
    """The orders service's side: wake the worker for an accepted order."""

    def __init__(self, sqs: Any, queue_url: str, breaker: Breaker | None = None,
                 call_timeout: float | None = None) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.breaker = breaker
        self.call_timeout = call_timeout or 1.0
        self._calls = AwsCalls(sqs, breaker, call_timeout)
        self._sending: set[asyncio.Task[None]] = set()

    def wake(self, request: OrderRequest) -> None:
        """Send a wake-up in the background (the customer does not wait for it)."""
        if len(self._sending) >= MAX_IN_FLIGHT:
            WAKE_UPS.labels(outcome="skipped").inc()
            return
        task = asyncio.create_task(self._send(request), name=f"wake-{request.order_id}")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, request: OrderRequest) -> None:
        deadline = asyncio.get_running_loop().time() + self.call_timeout
        try:
            await self._calls("send_message", deadline, QueueUrl=self.queue_url,
                              MessageBody=WakeUp.body(request))
        except (*AWS_ERRORS, NotSent) as exc:
            WAKE_UPS.labels(outcome="failed").inc()
            log.info("order %s: wake-up not sent (%s: %s); the sweep will apply it",
                     request.order_id, type(exc).__name__, exc)
            return
        WAKE_UPS.labels(outcome="sent").inc()

    async def close(self) -> None:
        """Stopping: the wake-ups still being sent get their own bound to finish, then are
        let go (each order is in its record: the sweep applies it)."""
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=self.call_timeout)
        for task in list(self._sending):
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)

    async def check(self, seconds: float = 1.0) -> str:
        deadline = asyncio.get_running_loop().time() + seconds
        try:
            await self._calls("get_queue_attributes", deadline, QueueUrl=self.queue_url,
                              AttributeNames=["QueueArn"])
        except (*AWS_ERRORS, NotSent) as exc:
            return f"error: {exc}"
        return "ok"

    async def probe(self) -> None:
        await self.sqs.get_queue_attributes(QueueUrl=self.queue_url,
                                            AttributeNames=["QueueArn"])
