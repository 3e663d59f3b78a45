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
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from shop.breaker import Breaker
from shop.errors import FallbackUnavailable, IdempotencyKeyReused
from shop.metrics import CACHE_READS, CACHE_REFRESHES, FALLBACKS, OUTBOX_ORDERS
from shop.orders import Order
from shop.settings import Settings

log = logging.getLogger(__name__)

AWS_ERRORS = (BotoCoreError, ClientError, OSError, asyncio.TimeoutError)
MAX_PRODUCT_ID = 2**31 - 1
MAX_QUANTITY = 100
MAX_IDEMPOTENCY_KEY = 200
# Connections a client keeps; the order buffer never has more calls in flight than this, so
# a call that got a slot is on the wire (see AwsCalls).
POOL_CONNECTIONS = 10


def client_config(settings: Settings, long_poll_seconds: float = 0,
                  attempts: int = 2) -> AioConfig:
    """Every AWS call is bounded: connect and read timeouts, one retry at most (the
    Builders' Library rule: retry at one layer only, and the caller already has a fallback).
    A client that long-polls waits that long on top of the read timeout."""
    return AioConfig(
        connect_timeout=settings.aws_timeout,
        read_timeout=settings.aws_timeout + long_poll_seconds,
        retries={"max_attempts": attempts, "mode": "standard"},
        max_pool_connections=POOL_CONNECTIONS,
    )


async def open_clients(stack: AsyncExitStack, settings: Settings, *names: str,
                       long_poll_seconds: float = 0, attempts: int = 2) -> list[Any]:
    """aioboto3 clients for the process's lifetime (closed with ``stack``)."""
    session = aioboto3.Session()
    config = client_config(settings, long_poll_seconds, attempts)
    return [await stack.enter_async_context(session.client(name, config=config))
            for name in names]


class NotSent(Exception):
    """No slot for the call before the deadline: it never left this process."""


class AwsCalls:
    """One client's calls under a caller's deadline, so that a failure tells whether the
    request may have reached AWS: an order may only be refused (503) when it did not.

    aiobotocore bounds connecting and reading, not the wait for one of its pooled
    connections: with AWS hung, calls queued there without limit. Here at most
    ``POOL_CONNECTIONS`` calls are in flight; one that cannot get a slot by the deadline
    raises ``NotSent``, one that got a slot runs under ``asyncio.timeout_at(deadline)``.
    Use it with a client made with ``attempts=1``: a retry inside botocore would hide that an
    earlier attempt was sent.
    """

    def __init__(self, client: Any, breaker: Breaker | None = None,
                 call_timeout: float | None = None) -> None:
        self.client = client
        self.breaker = breaker
        self.call_timeout = call_timeout
        self._slots = asyncio.Semaphore(POOL_CONNECTIONS)

    async def __call__(self, method: str, deadline: float | None, **kwargs: Any) -> Any:
        """With a ``deadline`` (a customer's request) the call also stops after
        ``call_timeout``. With a ``breaker``: refused at once (``NotSent``) while it is open;
        a call that fails for any reason but a 4xx answer counts against it."""
        breaker = self.breaker
        if breaker is not None and not breaker.closed:
            raise NotSent(f"{method}: the {breaker.name} breaker is open")
        try:
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        except TimeoutError as exc:
            raise NotSent(f"{method}: no connection free before the deadline") from exc
        if deadline is not None and self.call_timeout is not None:
            deadline = min(deadline, asyncio.get_running_loop().time() + self.call_timeout)
        try:
            async with asyncio.timeout_at(deadline):
                result = await getattr(self.client, method)(**kwargs)
        except Exception as exc:
            if breaker is not None and not _refused(exc):
                await breaker.failed(exc)
            raise
        finally:
            self._slots.release()
        if breaker is not None:
            await breaker.succeeded()
        return result


def _refused(exc: BaseException) -> bool:
    """AWS answered with a 4xx: it is up, the request was refused."""
    return isinstance(exc, ClientError) and \
        int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)) < 500


def may_have_arrived(exc: BaseException) -> bool:
    """Could the call that raised ``exc`` have been carried out by AWS? Only not sent (no
    slot, an open breaker), no connection, or an answer of 4xx (refused) say surely not."""
    if isinstance(exc, NotSent | EndpointConnectionError):  # ConnectTimeoutError is one too
        return False
    return not _refused(exc)


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

    def __init__(self, dynamodb: Any, table: str, refresh_seconds: float,
                 scan_timeout: float = 2.0) -> None:
        self.dynamodb = dynamodb
        self.table = table
        self.refresh_seconds = refresh_seconds
        self.scan_timeout = scan_timeout
        self._latest: dict[int, dict[str, Any]] = {}
        self._dirty = asyncio.Event()
        self._memo: tuple[float, list[dict[str, Any]]] | None = None
        self._scanning: asyncio.Future[None] | None = None

    def offer(self, products: list[dict[str, Any]]) -> None:
        """Called with every successful database read; costs a dict update, no I/O."""
        now = time.time()
        for product in products:
            self._latest[product["id"]] = {**product, "cached_at": now}
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

    async def read_all(self, deadline: float | None = None,
                       ) -> tuple[list[dict[str, Any]], float | None]:
        """All cached products, and the age of the oldest copy in seconds."""
        snapshot = await self._snapshot(deadline)
        if not snapshot:
            return [], None
        oldest = min(p["cached_at"] for p in snapshot)
        return [_public(p) for p in snapshot], round(time.time() - oldest, 1)

    async def _snapshot(self, deadline: float | None) -> list[dict[str, Any]]:
        """The table's copy, scanned at most once a second by one task at a time: while the
        breaker is open every read lands here, and the copy changes only when the database is
        back. Stale-while-revalidate: a caller never waits for a scan when there is a copy to
        answer with (the last scan's, or, before any scan, what this process last read from
        the database); a stale one starts a scan in the background, and its age keeps
        growing in the answers while DynamoDB does not answer. With no copy at all the
        caller waits for the scan, until its deadline; no answer raises."""
        if (memo := self._fresh_memo()) is not None:
            return memo
        if self._scanning is None:
            self._scanning = asyncio.ensure_future(self._rescan())
        copy = self._memo[1] if self._memo is not None else self._from_database()
        if copy:
            return copy
        async with asyncio.timeout_at(deadline):
            await asyncio.shield(self._scanning)
        if self._memo is None:
            raise EndpointConnectionError(endpoint_url=f"dynamodb table {self.table}")
        return self._memo[1]

    def _from_database(self) -> list[dict[str, Any]]:
        return sorted(self._latest.values(), key=lambda p: p["id"])

    async def _rescan(self) -> None:
        try:
            async with asyncio.timeout(self.scan_timeout):
                items = await self._scan()
        except Exception as exc:  # AWS out, or an item this version cannot read
            if self._memo is None and self._latest:
                # Never read the table, but this process read the database: what it read last
                # is a copy too (the database and AWS out together).
                self._memo = (time.monotonic(), self._from_database())
            elif self._memo is not None:
                self._memo = (time.monotonic(), self._memo[1])  # try DynamoDB again in 1 s
            log.warning("catalog cache unreachable (%s): serving the last copy", exc)
            CACHE_READS.labels(outcome="stale").inc()
        else:
            CACHE_READS.labels(outcome="ok").inc()
            self._memo = (time.monotonic(),
                          sorted((self._product(i) for i in items), key=lambda p: p["id"]))
        finally:
            self._scanning = None

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
    """The SQS message body of a buffered order: the request itself, its Idempotency-Key
    included, so that the worker refuses a reused key with another body as the API does."""

    order_id: uuid.UUID
    product_id: int
    quantity: int
    idempotency_key: str | None = None

    def body(self) -> str:
        data: dict[str, Any] = {"order_id": str(self.order_id), "product_id": self.product_id,
                                "quantity": self.quantity}
        if self.idempotency_key is not None:
            data["idempotency_key"] = self.idempotency_key
        return json.dumps(data)

    @classmethod
    def parse(cls, body: str) -> QueuedOrder:
        """Raises ValueError (or KeyError, TypeError) for a message that can never succeed."""
        data = json.loads(body)
        product_id, quantity = data["product_id"], data["quantity"]
        key = data.get("idempotency_key")
        # The API's bounds (a product id is a PostgreSQL integer): outside them, never.
        if not (type(product_id) is int and 0 < product_id <= MAX_PRODUCT_ID
                and type(quantity) is int and 0 < quantity <= MAX_QUANTITY
                and (key is None or (type(key) is str and 0 < len(key) <= MAX_IDEMPOTENCY_KEY))):
            raise ValueError(f"bad product_id, quantity or idempotency_key in {body[:200]!r}")
        return cls(uuid.UUID(data["order_id"]), product_id, quantity, key)


def _status_item(order_id: uuid.UUID, product_id: int, quantity: int, status: str,
                 reason: str | None = None, idempotency_key: str | None = None,
                 ) -> dict[str, Any]:
    item = {
        "order_id": {"S": str(order_id)},
        "product_id": {"N": str(product_id)},
        "quantity": {"N": str(quantity)},
        "status": {"S": status},
        "reason": {"S": reason or ""},
        "updated_at": {"N": str(round(time.time(), 3))},
    }
    if idempotency_key is not None:
        item["idempotency_key"] = {"S": idempotency_key}
    return item


def _key_item(order: QueuedOrder) -> dict[str, Any]:
    """An Idempotency-Key's record in the status table (no UUID starts with "key#"): which
    order the key was first used for."""
    return {"order_id": {"S": f"key#{order.idempotency_key}"},
            "order_ref": {"S": str(order.order_id)}}


class EnqueueUnknown(Exception):
    """The order may or may not be on the queue (the call timed out, or its connection broke
    after the request went out)."""


class Outbox:
    """Orders answered 202 whose enqueue had an unknown outcome: sent again from memory until
    the queue takes a copy. A duplicate is harmless (place_order replays by id), so a copy
    that did arrive meanwhile is still applied once.

    Memory is not durable: a process that dies holding orders loses those that never reached
    the queue. That takes the database and AWS out together and then that process dying; each
    held order is logged when it comes and when it goes, and counted in
    ``shop_outbox_orders``."""

    def __init__(self, buffer: OrderBuffer, max_orders: int, retry_seconds: float) -> None:
        self.buffer = buffer
        self.max_orders = max_orders
        self.retry_seconds = retry_seconds
        self._held: dict[uuid.UUID, QueuedOrder] = {}
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._held)

    def full(self) -> bool:
        return len(self._held) >= self.max_orders

    def get(self, order_id: uuid.UUID) -> QueuedOrder | None:
        return self._held.get(order_id)

    def held_ids(self) -> list[uuid.UUID]:
        return list(self._held)

    def hold(self, order: QueuedOrder) -> None:
        self._held[order.order_id] = order
        OUTBOX_ORDERS.set(len(self._held))
        log.warning("order %s held in the outbox (%d held): sent again until the queue "
                    "takes it", order.order_id, len(self._held))
        self._wake.set()

    async def keep_sending(self) -> None:
        """Background task: a pass over the held orders every ``retry_seconds`` (doubling,
        up to 30 s, while nothing gets through)."""
        delay = self.retry_seconds
        while True:
            await self._wake.wait()
            await asyncio.sleep(delay)
            sent = await self.flush()
            if not self._held:
                self._wake.clear()
            delay = self.retry_seconds if sent or not self._held else min(delay * 2, 30.0)

    async def flush(self) -> int:
        """Send what is held, in order, until one fails; returns how many went."""
        sent = 0
        for order in list(self._held.values()):
            try:
                await self.buffer.resend(order)
            except Exception as exc:  # the queue is still out: the rest wait for next time
                log.info("outbox: %d orders still held: %s: %s", len(self._held),
                         type(exc).__name__, exc)
                break
            del self._held[order.order_id]
            sent += 1
            log.info("order %s left the outbox: queued", order.order_id)
        OUTBOX_ORDERS.set(len(self._held))
        return sent


class OrderBuffer:
    """Orders that could not reach the database: on SQS, their status in DynamoDB.

    The request path calls through ``AwsCalls`` (a deadline, and whether a failed call may
    have arrived); ``outbox`` holds the orders whose enqueue had an unknown outcome."""

    def __init__(self, sqs: Any, dynamodb: Any, queue_url: str, status_table: str,
                 outbox_max: int = 1000, retry_seconds: float = 2.0,
                 settings: Settings | None = None) -> None:
        self.sqs = sqs
        self.dynamodb = dynamodb
        self.queue_url = queue_url
        self.status_table = status_table
        # With settings (the service), each client has a breaker: once AWS is known to be
        # out, an order is refused at once (503, nothing sent) instead of waiting on it.
        self.breakers: dict[str, Breaker] = {}
        call_timeout = None
        if settings is not None:
            self.breakers = {name: Breaker(name, settings.breaker_fail_max,
                                           settings.breaker_probe_seconds,
                                           probe_timeout=settings.aws_timeout)
                             for name in ("sqs", "dynamodb")}
            call_timeout = settings.aws_request_timeout
        self._sqs = AwsCalls(sqs, self.breakers.get("sqs"), call_timeout)
        self._dynamodb = AwsCalls(dynamodb, self.breakers.get("dynamodb"), call_timeout)
        self.outbox = Outbox(self, outbox_max, retry_seconds)

    async def keep_probing(self) -> None:
        """Background task: the breakers' probes (a cheap read of the queue and the table)."""
        probes = {
            "sqs": lambda: self.sqs.get_queue_attributes(QueueUrl=self.queue_url,
                                                         AttributeNames=["QueueArn"]),
            "dynamodb": lambda: self.dynamodb.describe_table(TableName=self.status_table),
        }
        await asyncio.gather(*(breaker.keep_probing(probes[name])
                               for name, breaker in self.breakers.items()))

    async def enqueue(self, order: QueuedOrder, deadline: float | None = None) -> None:
        """Durable before the customer hears "accepted": the pending status (so that a 202 can
        be looked up) and the message. No message, no 202: the status is withdrawn and the
        customer gets a 503 (``FallbackUnavailable``), but only when the message surely did
        not arrive; when it may have, ``EnqueueUnknown`` (the caller answers 202 and the outbox
        sends it again). A message whose status could not be written is still an accepted
        order (the worker applies it and records the outcome): 202, logged and counted
        (``shop_fallbacks_total{kind="order_status_unwritten"}``).

        Without an Idempotency-Key the two calls go side by side (the customer waits for the
        slower, not for both). With one, the status and the key's record are written first,
        in one transaction: the same key with another body is refused
        (``IdempotencyKeyReused``) before anything is sent. The worker may decide the order
        before the pending status lands: the status put is conditional, so it never
        overwrites the decision."""
        if order.idempotency_key is None:
            outcomes: tuple[Any, ...] = await asyncio.gather(
                self._put_pending(order, deadline), self._send(order, deadline),
                return_exceptions=True)
            wrote, sent = outcomes
            for outcome in outcomes:
                if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                    raise outcome  # cancelled: the caller goes away, nothing to answer
        else:
            try:
                wrote = await self._put_pending(order, deadline)
            except (IdempotencyKeyReused, FallbackUnavailable):
                raise  # refused, or nothing written: nothing is sent either
            except Exception as exc:
                wrote = exc
            sent = None
            try:
                await self._send(order, deadline)
            except Exception as exc:
                sent = exc
        if isinstance(sent, Exception):
            if may_have_arrived(sent):
                log.warning("order %s: enqueue outcome unknown: %s: %s", order.order_id,
                            type(sent).__name__, sent)
                raise EnqueueUnknown(str(sent)) from sent
            # Withdraw whatever this call may have written (a put that failed may still have
            # landed), never the status of an earlier request with the same Idempotency-Key;
            # before the 503 goes out, so that a retry it prompts can never lose its own
            # status to this withdrawal.
            if wrote is True or (isinstance(wrote, Exception) and may_have_arrived(wrote)):
                await self._withdraw(order, deadline)
            log.error("order %s could not be queued: %s", order.order_id, sent)
            raise FallbackUnavailable("database unavailable, order queue unreachable") from sent
        if isinstance(wrote, Exception):
            log.warning("order %s queued, but its pending status was not written: %s",
                        order.order_id, wrote)
            FALLBACKS.labels(kind="order_status_unwritten").inc()

    async def _send(self, order: QueuedOrder, deadline: float | None) -> None:
        await self._sqs("send_message", deadline, QueueUrl=self.queue_url,
                        MessageBody=order.body())

    async def _put_pending(self, order: QueuedOrder, deadline: float | None) -> bool:
        """False when the order already has a status (a repeated request): it is left as it
        is, pending or decided. With an Idempotency-Key, the key's record in the same
        transaction: a key first used for another order is ``IdempotencyKeyReused``."""
        status = {"TableName": self.status_table,
                  "Item": _status_item(order.order_id, order.product_id, order.quantity,
                                       "pending", idempotency_key=order.idempotency_key),
                  "ConditionExpression": "attribute_not_exists(order_id)"}
        try:
            if order.idempotency_key is None:
                await self._dynamodb("put_item", deadline, **status)
                return True
            await self._dynamodb("transact_write_items", deadline, TransactItems=[
                {"Put": status},
                {"Put": {"TableName": self.status_table, "Item": _key_item(order),
                         "ConditionExpression":
                             "attribute_not_exists(order_id) OR order_ref = :id",
                         "ExpressionAttributeValues": {":id": {"S": str(order.order_id)}}}},
            ])
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code == "ConditionalCheckFailedException":
                return False
            if code != "TransactionCanceledException":
                raise
            status_failed, key_failed = (
                reason.get("Code") == "ConditionalCheckFailed"
                for reason in exc.response.get("CancellationReasons", [{}, {}]))
            if key_failed:
                raise IdempotencyKeyReused() from exc
            if not status_failed:
                # Cancelled for another reason (a concurrent transaction on the same key):
                # nothing was written, and nothing must be sent unchecked.
                raise FallbackUnavailable("order status busy, try again") from exc
            return False
        return True

    async def resend(self, order: QueuedOrder) -> None:
        """The outbox's send: the message must arrive, the status is written where it can be
        (a key reused meanwhile is the worker's to reject and record)."""
        wrote, sent = await asyncio.gather(self._put_pending(order, None),
                                           self._send(order, None), return_exceptions=True)
        if isinstance(sent, BaseException):
            raise sent
        if isinstance(wrote, Exception) and not isinstance(wrote, IdempotencyKeyReused):
            log.warning("order %s queued from the outbox without its pending status: %s",
                        order.order_id, wrote)

    async def _withdraw(self, order: QueuedOrder, deadline: float | None) -> None:
        """Delete the pending status (and the key's record) this request wrote, under its
        deadline. Should AWS refuse that too, the status stays ``pending``: logged and counted
        (``shop_fallbacks_total{kind="order_status_stale"}``)."""
        deletes = [self._dynamodb(
            "delete_item", deadline, TableName=self.status_table,
            Key={"order_id": {"S": str(order.order_id)}},
            ConditionExpression="#s = :pending",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":pending": {"S": "pending"}},
        )]
        if order.idempotency_key is not None:
            deletes.append(self._dynamodb(
                "delete_item", deadline, TableName=self.status_table,
                Key={"order_id": _key_item(order)["order_id"]},
                ConditionExpression="order_ref = :id",
                ExpressionAttributeValues={":id": {"S": str(order.order_id)}},
            ))
        for outcome in await asyncio.gather(*deletes, return_exceptions=True):
            if isinstance(outcome, ClientError) and outcome.response["Error"]["Code"] \
                    == "ConditionalCheckFailedException":
                continue  # not ours to withdraw, or already gone
            if isinstance(outcome, Exception):
                log.warning("could not withdraw the status of order %s: %s", order.order_id,
                            outcome)
                FALLBACKS.labels(kind="order_status_stale").inc()

    async def record(self, orders: list[Order]) -> None:
        """The worker's decisions, so that GET /orders sees them even if the database goes
        again; one call for a whole batch. The same order twice in a batch (SQS delivers at
        least once) is one item: DynamoDB refuses a batch with a key in it twice."""
        once = {o.order_id: o for o in orders}.values()
        await batch_put(self.dynamodb, self.status_table, [
            _status_item(o.order_id, o.product_id, o.quantity, o.status, o.reason) for o in once
        ])

    async def status(self, order_id: uuid.UUID, deadline: float | None = None) -> Order | None:
        held = self.outbox.get(order_id)
        if held is not None:  # answered 202, not on the queue for sure yet
            return Order(held.order_id, held.product_id, held.quantity, "pending")
        response = await self._dynamodb(
            "get_item", deadline, TableName=self.status_table,
            Key={"order_id": {"S": str(order_id)}}, ConsistentRead=True,
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

    async def check(self, seconds: float = 1.0) -> dict[str, str]:
        """For /health/deep: through the same bounded slots as the orders (a health check must
        neither hang nor take the connections an order needs)."""
        deadline = asyncio.get_running_loop().time() + seconds
        result = {}
        try:
            await self._sqs("get_queue_attributes", deadline, QueueUrl=self.queue_url,
                            AttributeNames=["QueueArn"])
            result["order_queue"] = "ok"
        except (*AWS_ERRORS, NotSent) as exc:
            result["order_queue"] = f"error: {exc}"
        try:
            await self._dynamodb("describe_table", deadline, TableName=self.status_table)
            result["order_status_table"] = "ok"
        except (*AWS_ERRORS, NotSent) as exc:
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
