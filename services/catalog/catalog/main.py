"""The catalog service: product reads from the database reader endpoint."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from catalog.routes import router
from shop.db import open_endpoint
from shop.logs import configure_logging
from shop.settings import get_settings
from shop.web import create_app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    # The reader does not migrate: it waits until the writer's schema has reached it.
    async with open_endpoint("reader", settings.reader_url, settings, migrate=False) as reader:
        app.state.endpoint = reader
        yield


configure_logging()
app = create_app("catalog", lifespan, [router])
