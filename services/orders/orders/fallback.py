"""Where an order goes while the writer is out: its record in the order table (the store of
record, ``shop.order_records``), then a wake-up for the worker (``shop.order_queue``).

Every answer is true, the request's deadline holding: 202 only once the record is durably
written (or the order was already there, pending); the order's own state when it was decided
already (a repeat); 503 only when this request surely did nothing AND no earlier request can
have made this order (an order without a key, whose attempt surely never reached the
database); "unknown" (504) in every other case: a write that may still commit, a record
write that timed out, or a keyed order whose earlier requests cannot be looked up.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from shop.aws import AWS_ERRORS, NotSent, may_have_arrived
from shop.errors import FallbackUnavailable, IdempotencyKeyReused, OutcomeUnknown
from shop.metrics import ANSWERS_UNKNOWN, FALLBACKS
from shop.order_queue import OrderQueue
from shop.order_records import NotWritten, OrderRecords, Record
from shop.orders import OrderRequest


def unknown(request: OrderRequest, why: str) -> OutcomeUnknown:
    ANSWERS_UNKNOWN.labels(why=why).inc()
    return OutcomeUnknown(request.order_id)


def nothing_done(request: OrderRequest, may_exist: bool, message: str) -> Exception:
    """This request surely wrote nothing: 503, unless the order may exist anyway (its
    database write may still commit, or an earlier request with its key may have made it)."""
    if may_exist:
        return unknown(request, "commit")
    if request.idempotency_key is not None:
        return unknown(request, "unseen")
    return FallbackUnavailable(message)


class OrderFallback:
    def __init__(self, records: OrderRecords, queue: OrderQueue) -> None:
        self.records = records
        self.queue = queue

    async def take(self, request: OrderRequest, deadline: float, may_exist: bool) -> Record:
        """Accept the order into the order table (or find it there). ``may_exist``: an
        attempt on the database may have committed it (its outcome is unknown): the same id
        in the table is then applied by the worker as a replay, never twice. Returns the
        record as it stands (pending, or decided for a repeat); raises what the answer is
        otherwise."""
        try:
            record, _ = await self.records.accept(request, deadline)
        except IdempotencyKeyReused:
            if may_exist:  # this body's own database write may still commit
                raise unknown(request, "commit") from None
            raise
        except (NotSent, NotWritten) as exc:
            raise nothing_done(request, may_exist, "database unavailable, order table "
                                                   "unreachable") from exc
        except AWS_ERRORS as exc:
            if may_have_arrived(exc):  # a timeout, a broken connection, a 5xx
                raise unknown(request, "record") from exc
            raise nothing_done(request, may_exist, "database unavailable, order table "
                                                   "refused the order") from exc
        if record.status == "pending":
            self.queue.wake(request)
            FALLBACKS.labels(kind="order_queued").inc()
        return record

    async def status(self, order_id: uuid.UUID, deadline: float) -> Record | None:
        """An order's record, for GET /orders/{id} (raises when the table cannot answer)."""
        return await self.records.get(order_id, deadline)

    async def keep_probing(self) -> None:
        """Background task: each AWS client's breaker, probed while it is open."""
        probes = [(self.records.breaker, self.records.probe), (self.queue.breaker,
                                                               self.queue.probe)]
        await asyncio.gather(*(breaker.keep_probing(probe) for breaker, probe in probes
                               if breaker is not None))

    async def check(self) -> dict[str, Any]:
        """For /health/deep."""
        table, queue = await asyncio.gather(self.records.check(), self.queue.check())
        return {"order_status_table": table, "order_queue": queue}
