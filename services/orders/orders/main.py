"""The orders service: orders through the database writer endpoint, with the SQS order buffer
as the fallback while the writer's breaker is open."""

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from orders.routes import router
from shop.aws import OrderBuffer, open_clients
from shop.db import open_endpoint
from shop.logs import configure_logging
from shop.settings import get_settings
from shop.web import create_app

log = logging.getLogger("orders")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    async with AsyncExitStack() as stack:
        app.state.endpoint = await stack.enter_async_context(
            open_endpoint("writer", settings.writer_url, settings, migrate=True)
        )
        app.state.buffer = None
        if settings.enable_degradation and settings.order_queue_url \
                and settings.order_status_table:
            sqs, dynamodb = await open_clients(stack, settings, "sqs", "dynamodb")
            buffer = OrderBuffer(sqs, dynamodb, settings.order_queue_url,
                                 settings.order_status_table)
            app.state.buffer = buffer

            async def health_extras() -> dict[str, Any]:
                return await buffer.check()

            app.state.health_extras = health_extras
        elif settings.enable_degradation:
            log.warning("degradation is on but SHOP_ORDER_QUEUE_URL or SHOP_ORDER_STATUS_TABLE "
                        "is not set: orders have no fallback")
        yield


configure_logging()
app = create_app("orders", lifespan, [router])
