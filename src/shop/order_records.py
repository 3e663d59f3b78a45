"""The store of record for orders accepted while the database is out: one DynamoDB item each.

An order the database did not take is accepted (202) only once its item is durably written
here; that item, not a queue message and not a process's memory, is the order from then on.
The SQS message that follows is a wake-up (``shop.order_queue``); the worker applies the item
by its id with the same transaction as the API (``place_order``), and a sweep of the items
still undecided (the sparse index ``undecided``) applies those whose wake-up was lost, never
sent or dead-lettered. Why this is right, by the worst interleavings:

* the put is conditional (``attribute_not_exists``): a repeat of the same order, on any
  replica, at any time, finds the item instead of writing it, and answers from it; nothing is
  ever withdrawn, so two replicas taking the same key at once both answer the one order;
* an Idempotency-Key's record is written in the same transaction (``key#<scoped key>`` ->
  order id): the same key with another body is refused while nothing of it was written;
* a put that times out may have landed: the answer is "unknown" (504), never 202 and never
  503, and the customer's retry finds the item if it did; a put refused before it was sent
  (breaker open, no free connection, a 4xx) surely wrote nothing;
* decisions are made in PostgreSQL, where they never change (migration 0007); this table
  copies them (``decided``), so every writer of a final status writes the same value and a
  copy can never turn a decision around; the worker's attempt counter is a conditional update
  on ``pending`` and cannot touch a decided item;
* the index is eventually consistent, so the worker reads each item it found again with a
  consistent read before it acts.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import zlib
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from shop.aws import AWS_ERRORS, AwsCalls, NotSent, batch_put
from shop.breaker import Breaker
from shop.errors import IdempotencyKeyReused
from shop.orders import FINAL, Order, OrderRequest, OrderStatus

log = logging.getLogger(__name__)

UNDECIDED_INDEX = "undecided"  # sparse: only pending items carry the attribute
SHARDS = 8  # the index's partition key: pending items spread over this many values
BATCH_GET_MAX = 100  # DynamoDB's BatchGetItem limit


class NotWritten(Exception):
    """The record was surely not written by this call (a concurrent transaction on the same
    key won the race and nothing of this one was applied)."""


@dataclass(frozen=True)
class Record:
    """An accepted order as the order table holds it."""

    request: OrderRequest
    status: OrderStatus
    reason: str | None = None
    accepted_at: float = 0.0
    attempts: int = 0  # the worker's failed attempts (errors that are not an outage)
    retry_at: float = 0.0  # the worker's next attempt, not before (epoch seconds)

    @property
    def order_id(self) -> uuid.UUID:
        return self.request.order_id

    @property
    def decided(self) -> bool:
        return self.status in FINAL

    def order(self) -> Order:
        r = self.request
        return Order(r.order_id, r.product_id, r.quantity, self.status, self.reason)


def shard_of(order_id: uuid.UUID) -> str:
    return str(zlib.crc32(order_id.bytes) % SHARDS)


def _item(request: OrderRequest, status: OrderStatus, reason: str | None,
          accepted_at: float) -> dict[str, Any]:
    now = round(time.time(), 3)
    item: dict[str, Any] = {
        "order_id": {"S": str(request.order_id)},
        "product_id": {"N": str(request.product_id)},
        "quantity": {"N": str(request.quantity)},
        "status": {"S": status},
        "reason": {"S": reason or ""},
        "accepted_at": {"N": str(round(accepted_at or now, 3))},
        "updated_at": {"N": str(now)},
    }
    if request.idempotency_key is not None:
        item["idempotency_key"] = {"S": request.idempotency_key}
    if status == "pending":
        item["undecided"] = {"S": shard_of(request.order_id)}
    return item


def _record(item: dict[str, Any]) -> Record:
    key = item.get("idempotency_key", {}).get("S")
    request = OrderRequest(uuid.UUID(item["order_id"]["S"]), int(item["product_id"]["N"]),
                           int(item["quantity"]["N"]), key)
    return Record(request, item["status"]["S"], item.get("reason", {}).get("S") or None,
                  float(item.get("accepted_at", {}).get("N", 0)),
                  int(item.get("attempts", {}).get("N", 0)),
                  float(item.get("retry_at", {}).get("N", 0)))


def _key_item_id(request: OrderRequest) -> dict[str, str]:
    """An Idempotency-Key's record (no UUID starts with "key#"): which order it names."""
    return {"S": f"key#{request.idempotency_key}"}


class OrderRecords:
    """The order table (``SHOP_ORDER_STATUS_TABLE``). The orders service calls it through
    ``AwsCalls`` (a deadline, a breaker: whether a failed call may have arrived); the worker,
    without a breaker, under its client's timeouts."""

    def __init__(self, dynamodb: Any, table: str, breaker: Breaker | None = None,
                 call_timeout: float | None = None) -> None:
        self.dynamodb = dynamodb
        self.table = table
        self.breaker = breaker
        self._calls = AwsCalls(dynamodb, breaker, call_timeout)

    # The orders service ---------------------------------------------------------------------

    async def accept(self, request: OrderRequest,
                     deadline: float | None = None) -> tuple[Record, bool]:
        """Write the order as pending, durably, before anyone hears "accepted". Returns the
        record and whether this call wrote it; an order already there (a repeat) is returned
        as it stands, pending or decided.

        Raises ``IdempotencyKeyReused`` (the key names another order: nothing written),
        ``NotSent`` or a refusal (4xx: nothing written), ``NotWritten`` (a concurrent request
        for the same key held it: nothing of this one written), or an error after which the
        item may have landed (``shop.aws.may_have_arrived``)."""
        accepted_at = time.time()
        put = {"TableName": self.table,
               "Item": _item(request, "pending", None, accepted_at),
               "ConditionExpression": "attribute_not_exists(order_id)"}
        try:
            if request.idempotency_key is None:
                await self._calls("put_item", deadline, **put)
            else:
                await self._calls("transact_write_items", deadline, TransactItems=[
                    {"Put": put},
                    {"Put": {"TableName": self.table,
                             "Item": {"order_id": _key_item_id(request),
                                      "order_ref": {"S": str(request.order_id)}},
                             "ConditionExpression":
                                 "attribute_not_exists(order_id) OR order_ref = :id",
                             "ExpressionAttributeValues": {":id": {"S": str(request.order_id)}}}},
                ])
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            cancelled = code == "TransactionCanceledException"
            if cancelled and reasons[1:2] == ["ConditionalCheckFailed"]:
                raise IdempotencyKeyReused() from exc
            exists = code == "ConditionalCheckFailedException" or (
                cancelled and reasons[:1] == ["ConditionalCheckFailed"])
            if exists:
                return await self._existing(request, deadline), False
            if cancelled:
                # Cancelled whole for another reason (a concurrent transaction on the same
                # items): maybe the other request already accepted this very order.
                found = await self._get_quietly(request.order_id, deadline)
                if found is not None:
                    return found, False
                raise NotWritten(f"order {request.order_id}: {reasons}") from exc
            raise
        return Record(request, "pending", accepted_at=accepted_at), True

    async def _existing(self, request: OrderRequest, deadline: float | None) -> Record:
        """The order is there (the condition said so); as it stands, or, should the read not
        answer, as what it surely is: accepted and not known to be decided."""
        found = await self._get_quietly(request.order_id, deadline)
        return found if found is not None else Record(request, "pending")

    async def _get_quietly(self, order_id: uuid.UUID, deadline: float | None) -> Record | None:
        try:
            return await self.get(order_id, deadline)
        except (*AWS_ERRORS, NotSent) as exc:
            log.info("order %s: its record could not be read back: %s", order_id, exc)
            return None

    async def get(self, order_id: uuid.UUID, deadline: float | None = None) -> Record | None:
        """The record, read consistently; None when there is none."""
        response = await self._calls("get_item", deadline, TableName=self.table,
                                     Key={"order_id": {"S": str(order_id)}},
                                     ConsistentRead=True)
        item = response.get("Item")
        return _record(item) if item is not None else None

    async def check(self, seconds: float = 1.0) -> str:
        """For /health/deep, through the same bounded slots as the orders."""
        deadline = asyncio.get_running_loop().time() + seconds
        try:
            await self._calls("describe_table", deadline, TableName=self.table)
        except (*AWS_ERRORS, NotSent) as exc:
            return f"error: {exc}"
        return "ok"

    async def probe(self) -> None:
        """The breaker's background probe: a cheap read of the table."""
        await self.dynamodb.describe_table(TableName=self.table)

    # The worker -----------------------------------------------------------------------------

    async def get_many(self, order_ids: list[uuid.UUID]) -> dict[uuid.UUID, Record]:
        """Each order's record, read consistently (BatchGetItem, 100 at a time); orders
        without one are left out."""
        found: dict[uuid.UUID, Record] = {}
        unique = list(dict.fromkeys(order_ids))
        for start in range(0, len(unique), BATCH_GET_MAX):
            keys = [{"order_id": {"S": str(i)}} for i in unique[start:start + BATCH_GET_MAX]]
            wanted: dict[str, Any] = {self.table: {"Keys": keys, "ConsistentRead": True}}
            for attempt in range(5):
                if attempt:
                    await asyncio.sleep(0.05 * 2 ** attempt)
                response = await self.dynamodb.batch_get_item(RequestItems=wanted)
                for item in response.get("Responses", {}).get(self.table, []):
                    record = _record(item)
                    found[record.order_id] = record
                wanted = response.get("UnprocessedKeys") or {}
                if not wanted:
                    break
            else:
                raise TimeoutError(f"DynamoDB left {len(wanted[self.table]['Keys'])} reads of "
                                   f"{self.table} unprocessed")
        return found

    async def adopt(self, request: OrderRequest) -> None:
        """A queue message of the format before the order table was the store of record
        (the whole order, no record): its record, written as pending, so that it is applied
        and decided like any other (an upgrade loses nothing in flight)."""
        try:
            await self.dynamodb.put_item(
                TableName=self.table, Item=_item(request, "pending", None, time.time()),
                ConditionExpression="attribute_not_exists(order_id)")
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    async def undecided(self, accepted_before: float, limit: int) -> list[Record]:
        """Pending records accepted before ``accepted_before`` (epoch seconds), oldest first
        in each shard, ``limit`` at most in all: from the sparse index, eventually
        consistent (read them again before acting)."""
        found: list[Record] = []
        for shard in range(SHARDS):
            kwargs: dict[str, Any] = {
                "TableName": self.table, "IndexName": UNDECIDED_INDEX,
                "KeyConditionExpression": "undecided = :shard AND accepted_at < :before",
                "ExpressionAttributeValues": {":shard": {"S": str(shard)},
                                              ":before": {"N": str(accepted_before)}},
            }
            while len(found) < limit:
                page = await self.dynamodb.query(**kwargs, Limit=limit - len(found))
                found.extend(_record(item) for item in page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return found

    async def decided(self, decisions: list[tuple[Record, Order]]) -> None:
        """Copy the database's decisions (final, never to change there) into the records,
        one BatchWriteItem call per 25; the item leaves the ``undecided`` index."""
        once = {record.order_id: (record, order) for record, order in decisions}
        await batch_put(self.dynamodb, self.table, [
            _item(record.request, order.status, order.reason, record.accepted_at)
            for record, order in once.values()])

    async def retry_later(self, record: Record, attempts: int, retry_at: float,
                          error: str) -> None:
        """An attempt failed with an error that is not an outage: count it, and when to try
        again. Only on a pending record (a decision copied meanwhile stays as it is)."""
        try:
            await self.dynamodb.update_item(
                TableName=self.table, Key={"order_id": {"S": str(record.order_id)}},
                UpdateExpression="SET attempts = :n, retry_at = :at, last_error = :error",
                ConditionExpression="#s = :pending",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":n": {"N": str(attempts)},
                                           ":at": {"N": str(round(retry_at, 3))},
                                           ":error": {"S": error[:256]},
                                           ":pending": {"S": "pending"}})
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
