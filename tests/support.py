"""Helpers the tests share: running an app in-process, waiting with a deadline."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from shop.settings import get_settings


@contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """Set (or unset, with None) environment variables for the block, then restore them."""
    saved = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


@asynccontextmanager
async def serve(app: FastAPI, *, ready: bool = True, timeout: float = 5.0,
                **env: str | None) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app`` in-process (lifespan included) with ``env`` and yield a client for it.

    With ``ready`` it first waits until the database endpoint has its schema.
    """
    with environment(**env):
        # raise_app_exceptions=False: an unhandled error is a 500 answer, as under uvicorn.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=transport, base_url="http://shop", timeout=timeout
        ) as client:
            if ready:
                await eventually(lambda: _ready(app), "the schema to be ready", timeout=20)
            yield client


async def _ready(app: FastAPI) -> bool:
    return bool(app.state.endpoint.ready.is_set())


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 30,
                     interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def metric(metrics: httpx.Response, name: str, **labels: str) -> float:
    """One sample's value in a ``/metrics`` answer; 0 when it has not been counted yet."""
    for family in text_string_to_metric_families(metrics.text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


async def shop_traffic(catalog: httpx.AsyncClient, orders: httpx.AsyncClient,
                       stop: asyncio.Event, log: list[dict[str, Any]]) -> None:
    """Reads and orders every 50 ms, 3 to 1, until ``stop``; each outcome appended to ``log``
    with when it started. A timeout or connection error is status 0."""
    tick = 0
    while not stop.is_set():
        tick += 1
        kind = "write" if tick % 4 == 0 else "read"
        started = time.monotonic()
        try:
            if kind == "write":
                response = await orders.post("/orders", json={"product_id": 2, "quantity": 1})
            else:
                response = await catalog.get("/products")
            status, body = response.status_code, response.json()
        except httpx.HTTPError:
            status, body = 0, {}
        log.append({"kind": kind, "status": status, "body": body, "at": started})
        await asyncio.sleep(0.05)
