"""The orders service: orders through the database writer endpoint."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from orders.routes import router
from shop.db import open_endpoint
from shop.logs import configure_logging
from shop.settings import get_settings
from shop.web import create_app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    async with open_endpoint("writer", settings.writer_url, settings, migrate=True) as writer:
        app.state.endpoint = writer
        yield


configure_logging()
app = create_app("orders", lifespan, [router])
