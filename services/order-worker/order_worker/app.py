"""The worker as an ASGI app: its lifespan runs the drain loop, its routes are the health
signal an orchestrator probes (``/health``), ``/health/deep`` and ``/metrics``.

Under uvicorn, SIGTERM ends the lifespan: the loop stops polling, finishes its in-flight
messages, and the process exits 0.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from order_worker.worker import OrderWorker
from shop.aws import open_clients
from shop.db import open_endpoint
from shop.logs import configure_logging
from shop.order_queue import OrderQueue
from shop.order_records import OrderRecords
from shop.settings import get_settings
from shop.web import create_app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    if not (settings.order_queue_url and settings.order_status_table):
        raise SystemExit("order-worker: SHOP_ORDER_QUEUE_URL and SHOP_ORDER_STATUS_TABLE "
                         "are required")
    async with AsyncExitStack() as stack:
        writer = await stack.enter_async_context(
            open_endpoint("worker-writer", settings.writer_url, settings,
                          migrate=settings.migrate, primary=True)
        )
        # The receive long-polls for up to worker_wait_seconds: its read timeout must outlast it.
        (sqs,) = await open_clients(stack, settings, "sqs",
                                    long_poll_seconds=settings.worker_wait_seconds)
        (dynamodb,) = await open_clients(stack, settings, "dynamodb")
        records = OrderRecords(dynamodb, settings.order_status_table)
        worker = OrderWorker(settings, writer, sqs, records)
        app.state.endpoint = writer
        app.state.worker = worker
        queue = OrderQueue(sqs, settings.order_queue_url)

        async def health_extras() -> dict[str, Any]:
            table, reachable = await asyncio.gather(records.check(), queue.check())
            return {"order_status_table": table, "order_queue": reachable}

        app.state.health_extras = health_extras
        app.state.alive = worker.healthy  # /health answers 503 if the loop stalls
        task = asyncio.create_task(worker.run(), name="order-worker")
        try:
            yield
        finally:
            worker.stopping.set()  # stop polling; the batch in flight is finished
            await task


configure_logging()
app = create_app("order-worker", lifespan, [])
