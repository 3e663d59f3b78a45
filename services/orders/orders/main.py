"""The orders service: orders through the database writer endpoint, with the order table (the
store of record of orders accepted while the writer's breaker is open) and the queue that
wakes the worker as the fallback."""

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from orders.fallback import OrderFallback
from orders.routes import router
from shop.aws import open_clients
from shop.background import run_in_background
from shop.breaker import Breaker
from shop.clients import Quota
from shop.db import open_endpoint
from shop.logs import configure_logging
from shop.order_queue import OrderQueue
from shop.order_records import OrderRecords
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
        app.state.quota = (Quota(settings.client_orders_per_second,
                                 settings.client_orders_burst)
                           if settings.client_orders_per_second else None)
        app.state.fallback = None
        if settings.enable_degradation and settings.order_queue_url \
                and settings.order_status_table:
            # One attempt per call: a failure must tell whether the call may have arrived
            # (shop.aws.AwsCalls). Each client has a breaker: once AWS is known to be out,
            # nobody waits on it (the answer is then 503 or "unknown", at once).
            sqs, dynamodb = await open_clients(stack, settings, "sqs", "dynamodb", attempts=1)
            # Open after one failure: these calls are the fallback, made while the database is
            # out; one that did not answer in SHOP_AWS_REQUEST_TIMEOUT is enough to spare every
            # customer after it the same wait (the probe closes it within a second).
            breakers = {name: Breaker(name, 1, settings.breaker_probe_seconds,
                                      probe_timeout=settings.aws_timeout)
                        for name in ("sqs", "dynamodb")}
            records = OrderRecords(dynamodb, settings.order_status_table, breakers["dynamodb"],
                                   settings.aws_request_timeout)
            queue = OrderQueue(sqs, settings.order_queue_url, breakers["sqs"],
                               settings.aws_request_timeout)
            stack.push_async_callback(queue.close)
            fallback = OrderFallback(records, queue)
            run_in_background(stack, fallback.keep_probing(), name="aws-probes")
            app.state.fallback = fallback
            app.state.health_extras = fallback.check
        elif settings.enable_degradation:
            log.warning("degradation is on but SHOP_ORDER_QUEUE_URL or SHOP_ORDER_STATUS_TABLE "
                        "is not set: orders have no fallback")
        yield


configure_logging()
app = create_app("orders", lifespan, [router])
