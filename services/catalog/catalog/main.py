"""The catalog service: product reads from the database reader endpoint, with the DynamoDB
copy of the catalog as the fallback while the reader's breaker is open."""

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from catalog.routes import RecentList, RecentListMiddleware, router
from shop.aws import open_clients
from shop.background import run_in_background
from shop.db import open_endpoint
from shop.logs import configure_logging
from shop.product_cache import ProductCache
from shop.settings import get_settings
from shop.web import create_app

log = logging.getLogger("catalog")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    async with AsyncExitStack() as stack:
        # The reader does not migrate: it waits until the writer's schema has reached it.
        app.state.endpoint = await stack.enter_async_context(
            open_endpoint("reader", settings.reader_url, settings, migrate=False)
        )
        app.state.cache = None
        app.state.recent_list = RecentList(settings.catalog_max_age_seconds)
        if settings.enable_degradation and settings.product_cache_table:
            (dynamodb,) = await open_clients(stack, settings, "dynamodb")
            cache = ProductCache(dynamodb, settings.product_cache_table,
                                 settings.cache_refresh_seconds, scan_timeout=settings.aws_timeout)
            run_in_background(stack, cache.keep_fresh(), name="catalog-cache")
            app.state.cache = cache

            async def health_extras() -> dict[str, Any]:
                return {"cache_table": await cache.check()}

            app.state.health_extras = health_extras
        elif settings.enable_degradation:
            log.warning("degradation is on but SHOP_PRODUCT_CACHE_TABLE is not set: "
                        "reads have no fallback")
        yield


configure_logging()
app = create_app("catalog", lifespan, [router], middleware=[RecentListMiddleware])
