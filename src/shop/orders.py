"""The order transaction, written once: the orders API and the order-worker both call it.

``place_order`` is idempotent on the order id, which the caller makes before the first attempt
(from the client, its ``Idempotency-Key`` and the request's body when there is a key). A retry
after a lost commit acknowledgement, a copy of an order accepted while the database was out
that also went through directly, or the worker applying the same order twice all find the row
the first attempt wrote, and stock is decremented once. The key is unique in the table: the
same key with another body finds the first order's row under another id, and is rejected
instead of replayed or placed. A decision (confirmed, rejected, failed) is never rewritten:
the two SQL functions are the only writers of orders, and neither changes a decided row.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import asyncpg

from shop.db import Endpoint
from shop.errors import (
    DatabaseUnavailable,
    IdempotencyKeyReused,
    InsufficientStock,
    OrderFailed,
    Overloaded,
    ProductNotFound,
)
from shop.metrics import SHED

OrderStatus = Literal["confirmed", "rejected", "pending", "failed"]
FINAL: frozenset[str] = frozenset({"confirmed", "rejected", "failed"})
REASON_NO_STOCK = "insufficient stock"
REASON_UNKNOWN_PRODUCT = "unknown product"
REASON_KEY_REUSED = "Idempotency-Key already used for a different request"

# The API's bounds on a request (a product id is a PostgreSQL integer).
MAX_PRODUCT_ID = 2**31 - 1
MAX_QUANTITY = 100
MAX_IDEMPOTENCY_KEY = 200

# A fixed namespace: the same client, key and body always name the same order.
IDEMPOTENCY_NAMESPACE = uuid.UUID("4f1c2b0e-6f4e-4b8e-9a57-3c1d7f0e9b21")

# A COMMIT is never cancelled by the statement timeout: cancelled while it waits for the
# synchronous standby, it stays committed on the writer alone, and a replay would then confirm
# an order a failover can still lose. The order statement commits as it ends, so it gets no
# statement timeout (asyncpg takes no "none": a day). The request's deadline stops waiting for
# it instead (Endpoint.run(detach=True)), an unknown outcome, and a write that outlives its
# deadline by SHOP_DB_DETACHED_WRITE_SECONDS has its connection closed (never cancelled).
COMMIT_TIMEOUT_SECONDS = 24 * 3600.0


@dataclass(frozen=True)
class OrderRequest:
    """An order to place: its id, made before the first attempt, and what it asks for.
    ``idempotency_key`` is the client's key scoped by the client (``scoped_key``), as the
    database's unique key and the order table's key record hold it."""

    order_id: uuid.UUID
    product_id: int
    quantity: int
    idempotency_key: str | None = None

    @classmethod
    def new(cls, product_id: int, quantity: int, key: str | None = None,
            client: str = "anonymous") -> OrderRequest:
        """Random without a key; with one, the id of the client's key and body, so that a
        retry names the same order and the same key with another body another one (which
        place_order then refuses as a reused key)."""
        if key is None:
            return cls(uuid.uuid4(), product_id, quantity)
        return cls(order_id_for(client, key, product_id, quantity), product_id, quantity,
                   scoped_key(client, key))


def order_id_for(client: str, key: str, product_id: int, quantity: int) -> uuid.UUID:
    return uuid.uuid5(IDEMPOTENCY_NAMESPACE, json.dumps([client, key, product_id, quantity]))


def scoped_key(client: str, key: str) -> str:
    """A client's key as the stores hold it: two clients choosing the same key never meet
    (a client name has no space: see shop.clients)."""
    return f"{client} {key}"


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

    Returns the order as decided (confirmed, rejected with a reason, or failed earlier);
    never raises for a business outcome, so that the worker can record a rejection.
    ``answer_for`` turns a refusal into the API's 404/409/422.
    """
    row = await conn.fetchrow(
        f"SELECT {ORDER_COLUMNS} FROM place_order($1, $2, $3, $4)",
        order_id, product_id, quantity, idempotency_key, timeout=COMMIT_TIMEOUT_SECONDS)
    return _outcome(row, order_id, product_id, quantity)


def _outcome(row: asyncpg.Record | None, order_id: uuid.UUID, product_id: int,
             quantity: int) -> Order:
    """What the order function answered for this order."""
    if row is not None and row["id"] != order_id:
        # The key belongs to another order (another body): that one stands.
        return Order(order_id, product_id, quantity, "rejected", REASON_KEY_REUSED)
    return _order(row)


async def place_orders(conn: asyncpg.Connection, requests: list[OrderRequest]) -> list[Order]:
    """``place_order`` for several orders in one round trip and one transaction (the SQL
    function ``place_orders``, migration 0006, which calls ``place_order`` for each, in this
    order): each keeps its own id and outcome. Committed or failed as a whole."""
    rows = await conn.fetch(
        f"SELECT {ORDER_COLUMNS} FROM place_orders($1, $2, $3, $4)",
        [r.order_id for r in requests], [r.product_id for r in requests],
        [r.quantity for r in requests], [r.idempotency_key for r in requests],
        timeout=COMMIT_TIMEOUT_SECONDS)
    return [_outcome(row, r.order_id, r.product_id, r.quantity)
            for row, r in zip(rows, requests, strict=True)]


# Group commit ------------------------------------------------------------------------------

MAX_BATCH = 100  # orders in one call at most; the others go in the next


@dataclass(eq=False)
class _Waiting:
    request: OrderRequest
    deadline: float
    patience: float | None = None  # how long it waits on, sent, while the database answers
    placed: asyncio.Future[Order] = field(default_factory=lambda: _quiet_future())


def _quiet_future() -> asyncio.Future[Order]:
    """A future whose exception counts as seen even when its caller has gone."""
    future: asyncio.Future[Order] = asyncio.get_running_loop().create_future()
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    return future


class GroupCommit:
    """Concurrent orders for one product, in one process, placed by one call.

    While a call for a product is in flight its next orders wait, and go together as the next
    call as soon as it ends (a lone order goes at once: there is no timer). On a hot product
    that is one transaction, one commit and one turn at the row lock for many orders, instead
    of one each. Every order keeps its own id and outcome; a call that fails gives its error
    (``DatabaseUnavailable`` with the call's ``may_have_applied``) to every order in it, and
    the breaker hears one outcome per call (``Endpoint.run``).

    An order is sent only once a connection is in hand: until then it waits, and its deadline
    there means it was never sent (``may_have_applied=False``), and never will be. Once sent,
    its call is neither cancelled by its deadline nor by its caller going away: the others
    share it, and a COMMIT is never cut short (``Endpoint.run(detach=True)``); that caller
    hears ``may_have_applied=True``.
    """

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._waiting: dict[int, list[_Waiting]] = {}  # per product, in arrival order
        self._calls: dict[int, asyncio.Task[None]] = {}  # per product, the one sending

    async def place(self, request: OrderRequest, deadline: float,
                    patience: float | None = None) -> tuple[Order, float]:
        """The order's outcome and how long it took, in milliseconds. ``deadline``: when to
        give up on the database (for the fallback); ``patience`` (later): how long a sent
        order waits for its outcome instead while the database answers the process's other
        calls (overload: it will be decided, and a fallback would only add work)."""
        started = time.perf_counter()
        product = request.product_id
        waiting = _Waiting(request, deadline, patience)
        self._waiting.setdefault(product, []).append(waiting)
        if product not in self._calls:
            self._calls[product] = asyncio.create_task(self._send(product),
                                                       name=f"orders-{product}")
        try:
            async with asyncio.timeout_at(deadline):
                await asyncio.shield(waiting.placed)
        except asyncio.CancelledError:
            self._withdraw(waiting)
            raise
        except TimeoutError as exc:
            sent = waiting not in self._waiting.get(product, [])
            if sent and patience is not None:
                await self._wait_while_answering(waiting, patience)
            # Placed as the deadline struck (or while it waited on): that is the answer.
            if not waiting.placed.done() or waiting.placed.exception() is not None:
                self._withdraw(waiting)
                if not sent and self._answering():
                    # It waited its turn behind this process's other orders while the
                    # database answers them: overload, not an outage. Shed (nothing was
                    # sent, nor ever will be); a fallback would add the order table's and
                    # the queue's work to a process that already has too much.
                    SHED.labels(why="waited").inc()
                    raise Overloaded() from None
                raise DatabaseUnavailable(self.endpoint.name, exc,
                                          may_have_applied=sent) from None
        return waiting.placed.result(), round((time.perf_counter() - started) * 1000, 2)

    def _withdraw(self, waiting: _Waiting) -> None:
        """An order its caller stops waiting for: if not sent yet, it never will be."""
        queue = self._waiting.get(waiting.request.product_id, [])
        if waiting in queue:
            queue.remove(waiting)

    async def _wait_while_answering(self, waiting: _Waiting, patience: float) -> None:
        """A sent order past its deadline: wait on for its outcome, until ``patience``, as
        long as the database answers the process's other calls (checked every 50 ms); under
        an outage that stops within ``SHOP_FALLBACK_AFTER_SECONDS`` of the last answer."""
        loop = asyncio.get_running_loop()
        while not waiting.placed.done() and self._answering():
            left = patience - loop.time()
            if left <= 0:
                return
            await asyncio.wait({waiting.placed}, timeout=min(left, 0.05))

    def _answering(self) -> bool:
        """The database answers this process's other calls right now (``Endpoint.answering``)
        and its breaker is closed. Without a breaker (degradation off) there is no fallback
        to spare, and nothing changes."""
        breaker = self.endpoint.breaker
        return breaker is not None and breaker.closed and self.endpoint.answering()

    async def _send(self, product: int) -> None:
        """Calls for ``product`` one after another while orders wait for it."""
        try:
            while self._waiting.get(product):
                await self._call(product)
        finally:
            del self._calls[product]
            if not self._waiting.get(product):
                self._waiting.pop(product, None)

    async def _call(self, product: int) -> None:
        batch: list[_Waiting] | None = None

        async def operation(conn: asyncpg.Connection) -> list[Order]:
            nonlocal batch
            if batch is None:  # the first attempt takes the orders waiting now; a retry
                queue = self._waiting[product]  # sends the same ones again (a replay)
                batch, queue[:MAX_BATCH] = queue[:MAX_BATCH], []
            if not batch:
                return []
            return await place_orders(conn, [w.request for w in batch])

        # Bounded by the latest deadline of the orders waiting; each stops waiting at its own.
        # While the database answers the process's other calls, by their patience instead: a
        # call slow because the process is overloaded is not cut short to be told "unknown"
        # (its orders wait on while the database answers, and stop waiting once it does not).
        answering = self._answering()
        deadline = max(w.patience if answering and w.patience is not None else w.deadline
                       for w in self._waiting[product])
        try:
            placed = await self.endpoint.run(operation, deadline=deadline, detach=True)
        except Exception as exc:
            failed = batch
            if failed is None:  # failed before it had a connection: nothing was sent
                queue = self._waiting[product]
                failed, queue[:] = queue[:], []
            for waiting in failed:
                if not waiting.placed.done():
                    waiting.placed.set_exception(exc)
            return
        assert batch is not None
        for waiting, order in zip(batch, placed, strict=True):
            if not waiting.placed.done():
                waiting.placed.set_result(order)



async def fail_order(conn: asyncpg.Connection, request: OrderRequest, reason: str) -> Order:
    """The worker's last word on an order it could not apply: ``failed`` with the reason, in
    the orders table, where every later copy of the order finds it (SQL function
    ``fail_order``, migration 0007). An order decided meanwhile keeps its decision, which is
    returned instead."""
    row = await conn.fetchrow(
        f"SELECT {ORDER_COLUMNS} FROM fail_order($1, $2, $3, $4, $5)",
        request.order_id, request.product_id, request.quantity, request.idempotency_key,
        reason, timeout=COMMIT_TIMEOUT_SECONDS)
    return _outcome(row, request.order_id, request.product_id, request.quantity)


def answer_for(order: Order) -> Order:
    """The API's view of a decided order: confirmed is returned; a refusal is a business
    exception (404, 409, 422); a failed one is 409 with its reason."""
    if order.status == "rejected":
        if order.reason == REASON_UNKNOWN_PRODUCT:
            raise ProductNotFound()
        if order.reason == REASON_KEY_REUSED:
            raise IdempotencyKeyReused()
        raise InsufficientStock()
    if order.status == "failed":
        raise OrderFailed(order.reason)
    return order


async def fetch_order(conn: asyncpg.Connection, order_id: uuid.UUID) -> Order | None:
    row = await conn.fetchrow(f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1", order_id)
    return _order(row) if row is not None else None
