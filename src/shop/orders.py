"""The order transaction, written once: the orders API and the order-worker both call it.

``place_order`` is idempotent on the order id, which the caller makes before the first attempt
(from the ``Idempotency-Key`` header and the request's body when there is a key). A retry after
a lost commit acknowledgement, a queued copy of an order that also went through directly, or an
SQS message delivered twice all find the row the first attempt wrote, and stock is decremented
once. The key is unique in the table: the same key with another body finds the first order's
row under another id, and is rejected instead of replayed or placed.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

from shop.errors import IdempotencyKeyReused, InsufficientStock, ProductNotFound

# "failed" lives only in the order-status table: an order that never reached the database
# (its message was dead-lettered).
OrderStatus = Literal["confirmed", "rejected", "pending", "failed"]
REASON_NO_STOCK = "insufficient stock"
REASON_UNKNOWN_PRODUCT = "unknown product"
REASON_KEY_REUSED = "Idempotency-Key already used for a different request"

# A fixed namespace: the same Idempotency-Key with the same body always names the same order.
IDEMPOTENCY_NAMESPACE = uuid.UUID("4f1c2b0e-6f4e-4b8e-9a57-3c1d7f0e9b21")

# A COMMIT is never cancelled by the statement timeout: cancelled while it waits for the
# synchronous standby, it stays committed on the writer alone, and a replay would then confirm
# an order a failover can still lose. The order statement commits as it ends, so it gets no
# statement timeout (asyncpg takes no "none": a day). The request's deadline stops waiting for
# it instead (Endpoint.run(detach=True)), an unknown outcome.
COMMIT_TIMEOUT_SECONDS = 24 * 3600.0


def order_id_for(idempotency_key: str | None, product_id: int, quantity: int) -> uuid.UUID:
    """The order id, made before the first attempt: random without a key; with one, the
    key's fingerprint together with the body's, so that the same key with another body is
    another order id (which place_order then rejects as a reused key)."""
    if idempotency_key is None:
        return uuid.uuid4()
    return uuid.uuid5(IDEMPOTENCY_NAMESPACE, json.dumps([idempotency_key, product_id, quantity]))


@dataclass(frozen=True)
class Order:
    order_id: uuid.UUID
    product_id: int
    quantity: int
    status: OrderStatus
    reason: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


def _order(row: asyncpg.Record | None) -> Order:
    assert row is not None, "the order row was just claimed or found"
    return Order(
        order_id=row["id"],
        product_id=row["product_id"],
        quantity=row["quantity"],
        status=row["status"],
        reason=row["reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


ORDER_COLUMNS = "id, product_id, quantity, status, reason, created_at, updated_at"


async def place_order(
    conn: asyncpg.Connection, order_id: uuid.UUID, product_id: int, quantity: int,
    idempotency_key: str | None = None,
) -> Order:
    """Record the order and decrement stock atomically; replay the outcome if it exists.

    One round trip: the SQL function ``place_order`` (migration 0005) claims the id and the
    key, decrements the stock conditionally and records the outcome, in the statement's own
    transaction. Its timeout is the commit's (see above): the request's deadline, not the
    statement timeout, decides how long anyone waits for it.

    Returns the order, confirmed or rejected (with a reason); never raises for a business
    outcome, so that the worker can record a rejection. ``raise_for_rejection`` turns a
    rejection into the API's 404/409/422.
    """
    row = await conn.fetchrow(
        f"SELECT {ORDER_COLUMNS} FROM place_order($1, $2, $3, $4)",
        order_id, product_id, quantity, idempotency_key, timeout=COMMIT_TIMEOUT_SECONDS)
    if row is not None and row["id"] != order_id:
        # The key belongs to another order (another body): that one stands.
        return Order(order_id, product_id, quantity, "rejected", REASON_KEY_REUSED)
    return _order(row)


def raise_for_rejection(order: Order) -> Order:
    """The API's view of a rejected order: a business exception (404 or 409)."""
    if order.status == "rejected":
        if order.reason == REASON_UNKNOWN_PRODUCT:
            raise ProductNotFound()
        if order.reason == REASON_KEY_REUSED:
            raise IdempotencyKeyReused()
        raise InsufficientStock()
    return order


async def fetch_order(conn: asyncpg.Connection, order_id: uuid.UUID) -> Order | None:
    row = await conn.fetchrow(f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1", order_id)
    return _order(row) if row is not None else None
