"""The sweep: accepted orders the queue did not bring, applied from the order table.

Every ``SHOP_WORKER_SWEEP_SECONDS`` the worker reads the order table's sparse index of
undecided records, those accepted more than ``SHOP_WORKER_SWEEP_AFTER_SECONDS`` ago (the
wake-up normally brings them sooner), reads each again consistently (the index lags), and
settles them like a wake-up would. So an order whose wake-up was lost, never sent (the
queue was out when it was accepted) or dead-lettered is applied all the same. It waits while
the database is out, and while the queue is backlogged (the pollers are on those same
orders), but never longer than ``MAX_SWEEP_GAP_SECONDS``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from order_worker.settle import Settler
from shop.background import pause
from shop.metrics import ORDERS_UNDECIDED, SWEPT
from shop.order_records import OrderRecords
from shop.settings import Settings

log = logging.getLogger("order_worker")

SWEEP_LIMIT = 1000  # undecided records read per sweep at most; the next sweep takes the rest
MAX_SWEEP_GAP_SECONDS = 60.0


class Sweeper:
    def __init__(self, settings: Settings, records: OrderRecords, settler: Settler,
                 queue_busy: Callable[[], bool] = lambda: False) -> None:
        self.settings = settings
        self.records = records
        self.settler = settler
        self.queue_busy = queue_busy
        self.last_sweep = time.monotonic()

    def due(self) -> bool:
        if not self.settler.database_usable():
            return False
        overdue = time.monotonic() - self.last_sweep >= MAX_SWEEP_GAP_SECONDS
        return overdue or not self.queue_busy()

    async def sweep(self) -> dict[str, int]:
        """One sweep; returns how many orders ended how."""
        self.last_sweep = time.monotonic()
        before = time.time() - self.settings.worker_sweep_after_seconds
        undecided = await self.records.undecided(before, SWEEP_LIMIT)
        ORDERS_UNDECIDED.set(len(undecided))
        counts: dict[str, int] = {}
        step = self.settings.worker_concurrency
        for start in range(0, len(undecided), step):
            chunk = undecided[start:start + step]
            current = await self.records.get_many([r.order_id for r in chunk])
            for outcome in (await self.settler.settle(list(current.values()))).values():
                counts[outcome] = counts.get(outcome, 0) + 1
                SWEPT.labels(outcome=outcome).inc()
            if not self.settler.database_usable():
                break  # out again: the next sweep goes on from there
        if counts:
            log.info("sweep: %d undecided orders older than %.0f s: %s", len(undecided),
                     self.settings.worker_sweep_after_seconds,
                     ", ".join(f"{n} {name}" for name, n in sorted(counts.items())))
        return counts

    async def run(self, stopping: asyncio.Event) -> None:
        """Until ``stopping``; a sweep that fails is logged, and the loop goes on."""
        while not stopping.is_set():
            if self.due():
                try:
                    await self.sweep()
                except Exception as exc:  # never dies: the next sweep tries again
                    log.warning("sweep failed: %s: %s", type(exc).__name__, exc)
            await pause(stopping, self.settings.worker_sweep_seconds)
