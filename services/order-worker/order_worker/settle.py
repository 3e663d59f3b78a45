"""Settling accepted orders: the order table's pending records applied to the database with
the orders service's own transaction (shop.orders.place_order), and the decisions copied back.

The one path for both ways an order reaches the worker, a wake-up from the queue and the
sweep of the order table. For each record:

* decided already: nothing to do (a wake-up delivered twice, a sweep behind a wake-up);
* pending: ``place_order`` by its id (a replay if a copy of it committed already: the API's
  own attempt that outlived its deadline, another worker). Confirmed or rejected: decided;
* the database is out: left as it is (not an attempt: an outage never fails an order);
* any other error (a trigger, a permission, a bug): an attempt, counted in the record, tried
  again later and later; after ``SHOP_WORKER_MAX_ATTEMPTS`` the order is failed for good,
  in the database (``fail_order``) where every later copy of it finds the decision.

Decisions are copied into the order table in one call per batch; until that copy lands the
record stays pending and the next wake-up or sweep replays the decision.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg

from shop.db import Endpoint
from shop.errors import DatabaseNotReady, DatabaseUnavailable
from shop.metrics import ORDERS_FAILED
from shop.order_records import OrderRecords, Record
from shop.orders import Order, fail_order, place_order
from shop.settings import Settings

log = logging.getLogger("order_worker")

MAX_RETRY_SECONDS = 300.0

# What became of a record in one settle: its decision, or one of these.
RETRY = "retry"  # the database was out: as it was, for the next wake-up or sweep
ATTEMPTED = "attempted"  # an error that is not an outage: counted, tried again later
LATER = "later"  # not due yet (after a failed attempt), or being settled by another task


class Settler:
    def __init__(self, settings: Settings, writer: Endpoint, records: OrderRecords) -> None:
        self.settings = settings
        self.writer = writer
        self.records = records
        self.in_flight: set[uuid.UUID] = set()  # being settled here now: nobody else starts

    def database_usable(self) -> bool:
        """True when the schema is in place and the breaker is closed (its background probe
        closes it once the writer answers again)."""
        breaker = self.writer.breaker
        return self.writer.ready.is_set() and (breaker is None or breaker.closed)

    async def settle(self, records: list[Record]) -> dict[uuid.UUID, str]:
        """Each record's outcome: confirmed, rejected, failed, or RETRY / ATTEMPTED / LATER.
        Records decided already are left out."""
        now = time.time()
        due = [r for r in records if not r.decided and r.retry_at <= now
               and r.order_id not in self.in_flight]
        chosen = {r.order_id for r in due}
        outcomes = {r.order_id: LATER for r in records
                    if not r.decided and r.order_id not in chosen}
        self.in_flight.update(r.order_id for r in due)
        try:
            results = await asyncio.gather(*(self._apply(r) for r in due),
                                           return_exceptions=True)
            decisions: list[tuple[Record, Order]] = []
            for record, result in zip(due, results, strict=True):
                if isinstance(result, BaseException) and not isinstance(result, Exception):
                    raise result  # cancelled: stopping
                if isinstance(result, Order):
                    decisions.append((record, result))
                elif isinstance(result, DatabaseUnavailable | DatabaseNotReady):
                    outcomes[record.order_id] = RETRY
                else:
                    decided = await self._attempt_failed(record, result)
                    if decided is None:
                        outcomes[record.order_id] = ATTEMPTED
                    else:
                        decisions.append((record, decided))
            if decisions:
                await self.records.decided(decisions)
                for record, order in decisions:
                    outcomes[record.order_id] = order.status
                    log.info("order %s %s%s", order.order_id, order.status,
                             f" ({order.reason})" if order.reason else "")
        finally:
            self.in_flight.difference_update(r.order_id for r in due)
        return outcomes

    async def _apply(self, record: Record) -> Order:
        r = record.request
        return await self._run(lambda conn: place_order(
            conn, r.order_id, r.product_id, r.quantity, r.idempotency_key))

    async def _run(self, operation: Callable[[asyncpg.Connection], Awaitable[Order]]) -> Order:
        # Bounded like a request (the order statement has no statement timeout, so that its
        # commit is never cut short): past it the outcome is unknown, the record stays
        # pending, and place_order replays whatever did commit.
        deadline = asyncio.get_running_loop().time() + self.settings.request_budget_seconds
        return await self.writer.run(operation, deadline=deadline, detach=True)

    async def _attempt_failed(self, record: Record, error: BaseException) -> Order | None:
        """An error that is not an outage. Counted; on the last attempt the order is failed
        for good (returned: the decision, or one a copy committed meanwhile)."""
        attempts = record.attempts + 1
        reason = f"{type(error).__name__}: {error}"[:256]
        log.error("order %s: attempt %d of %d failed: %s", record.order_id, attempts,
                  self.settings.worker_max_attempts, reason)
        if attempts >= self.settings.worker_max_attempts:
            try:
                decided = await self._run(lambda conn: fail_order(
                    conn, record.request, f"not applied after {attempts} attempts: {reason}"))
            except Exception as exc:  # not even that: the next sweep tries again
                log.error("order %s could not be failed: %s: %s", record.order_id,
                          type(exc).__name__, exc)
                return None
            if decided.status == "failed":
                # One line per failed order, in this exact form: a log metric filter counts it.
                log.error("order failed: %s: %s", record.order_id, decided.reason)
                ORDERS_FAILED.labels(reason="attempts_exhausted").inc()
            return decided
        delay = min(self.settings.worker_retry_seconds * 2 ** (attempts - 1), MAX_RETRY_SECONDS)
        await self.records.retry_later(record, attempts, time.time() + delay, reason)
        return None
