"""The order-worker: the orders accepted while the database was out, applied to it.

The order table is the store of record of those orders (``shop.order_records``); the queue
only wakes the worker. Its loops, each in a module of its own:

* ``SHOP_WORKER_POLLERS`` wake-up pollers (``order_worker.wake_ups``): receive, settle
  (``order_worker.settle``: the orders service's own transaction, decisions copied back);
* the sweep (``order_worker.sweep``): undecided records the queue did not bring;
* the dead-letter watcher (``order_worker.dead_letters``): wake-ups of recorded orders
  cleared from the DLQ, the rest left for a person;
* the queues' depth for the dashboard (``order_worker.queue_depth``).

While the writer's breaker is not closed the worker neither receives nor sweeps (the
breaker's background probe closes it once the writer answers), so a long outage burns no
receive counts and counts no attempts. Nothing a message or the database does stops a loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from order_worker.dead_letters import DLQ_WATCH_SECONDS, DeadLetters
from order_worker.queue_depth import QueueDepth
from order_worker.settle import Settler
from order_worker.sweep import Sweeper
from order_worker.wake_ups import WakeUpPoller
from shop.aws import AWS_ERRORS
from shop.background import pause
from shop.db import Endpoint
from shop.order_records import OrderRecords
from shop.settings import Settings

log = logging.getLogger("order_worker")

MAX_POLL_BACKOFF_SECONDS = 10.0  # well under the health limit: a pausing poller is alive


class OrderWorker:
    def __init__(self, settings: Settings, writer: Endpoint, sqs: Any,
                 records: OrderRecords) -> None:
        assert settings.order_queue_url, "SHOP_ORDER_QUEUE_URL is required"
        self.settings = settings
        self.writer = writer
        self.queue_url = settings.order_queue_url
        self.settler = Settler(settings, writer, records)
        self.dead_letters = DeadLetters(sqs, self.queue_url, records)
        self.pollers = [WakeUpPoller(settings, sqs, self.queue_url, records, self.settler,
                                     self.dead_letters)
                        for _ in range(settings.worker_pollers)]
        self.sweeper = Sweeper(settings, records, self.settler,
                               queue_busy=lambda: any(p.backlogged for p in self.pollers))
        self.depth = QueueDepth(settings, sqs, self.queue_url, self.dead_letters)
        self.stopping = asyncio.Event()
        self.last_poll = time.monotonic()  # the health signal: the loop is alive

    def healthy(self) -> bool:
        """Alive if the loop went round recently (a long poll plus the slowest batch)."""
        limit = self.settings.worker_wait_seconds + 3 * self.settings.retry_budget_seconds + 10
        return time.monotonic() - self.last_poll < limit

    async def run(self) -> None:
        """Until ``stopping`` is set; in-flight messages are finished before it returns."""
        log.info("order-worker draining %s with %d pollers", self.queue_url, len(self.pollers))
        await asyncio.gather(*(self._poll(p) for p in self.pollers),
                             self.sweeper.run(self.stopping), self._watch_dead_letters(),
                             self.depth.run(self.stopping))
        log.info("order-worker stopped")

    async def _poll(self, poller: WakeUpPoller) -> None:
        failures = 0
        while not self.stopping.is_set():
            self.last_poll = time.monotonic()
            try:
                if not self.settler.database_usable():
                    await self._pause(1.0)
                    continue
                messages = await poller.receive()
                if messages:
                    await poller.handle(messages)
                failures = 0
            except Exception as exc:  # a poller never dies: say what it was, wait, go on
                failures += 1
                delay = float(min(2 ** (failures - 1), MAX_POLL_BACKOFF_SECONDS))
                if isinstance(exc, AWS_ERRORS):
                    log.warning("queue unreachable: %s; polling again in %.0f s", exc, delay)
                else:
                    log.error("poll failed: %s: %s; polling again in %.0f s",
                              type(exc).__name__, exc, delay, exc_info=exc)
                await self._pause(delay)

    async def _watch_dead_letters(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            delay = DLQ_WATCH_SECONDS
            try:
                await self.dead_letters.clear_known(self.stopping)
                failures = 0
            except Exception as exc:  # never dies either
                failures += 1
                delay = max(delay, float(min(2 ** (failures - 1), MAX_POLL_BACKOFF_SECONDS)))
                log.warning("dead-letter queue check failed: %s: %s", type(exc).__name__, exc)
            await self._pause(delay)

    async def _pause(self, seconds: float) -> None:
        await pause(self.stopping, seconds)
