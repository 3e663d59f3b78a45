"""The orders service: orders through the database writer endpoint, with the SQS order buffer
as the fallback while the writer's breaker is open."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from orders.routes import router
from shop.aws import OrderBuffer, open_clients
from shop.background import run_in_background
from shop.db import open_endpoint
from shop.logs import configure_logging
from shop.orders import GroupCommit
from shop.settings import get_settings
from shop.web import create_app

log = logging.getLogger("orders")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    async with AsyncExitStack() as stack:
        app.state.endpoint = await stack.enter_async_context(
            open_endpoint("writer", settings.writer_url, settings, migrate=settings.migrate,
                          primary=True)
        )
        # The writer's group commit: concurrent orders for one product, one transaction.
        app.state.group_commit = GroupCommit(app.state.endpoint)
        app.state.buffer = None
        if settings.enable_degradation and settings.order_queue_url \
                and settings.order_status_table:
            # One attempt per call: a failure must tell whether the order may have arrived
            # (shop.aws.AwsCalls); the outbox is the retry.
            sqs, dynamodb = await open_clients(stack, settings, "sqs", "dynamodb", attempts=1)
            buffer = OrderBuffer(sqs, dynamodb, settings.order_queue_url,
                                 settings.order_status_table, settings.outbox_max_orders,
                                 settings=settings)
            app.state.buffer = buffer
            stack.push_async_callback(last_flush, buffer)
            run_in_background(stack, buffer.outbox.keep_sending(), name="outbox")
            run_in_background(stack, buffer.keep_probing(), name="aws-probes")

            async def health_extras() -> dict[str, Any]:
                return await buffer.check()

            app.state.health_extras = health_extras
        elif settings.enable_degradation:
            log.warning("degradation is on but SHOP_ORDER_QUEUE_URL or SHOP_ORDER_STATUS_TABLE "
                        "is not set: orders have no fallback")
        yield


async def last_flush(buffer: OrderBuffer) -> None:
    """Stopping: one more try for orders still held (answered 202), then say which are lost."""
    if not len(buffer.outbox):
        return
    try:
        async with asyncio.timeout(5):
            await buffer.outbox.flush()
    except TimeoutError:
        pass
    for order_id in buffer.outbox.held_ids():
        log.error("order %s was answered 202 but never reached the queue: lost with this "
                  "process", order_id)


configure_logging()
app = create_app("orders", lifespan, [router])
