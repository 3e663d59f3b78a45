"""Helpers the tests share: running an app in-process, waiting with a deadline."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from chaos_lab.model import Fault, Switches
from chaos_lab.processes import LabError
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


async def cure(db: Any) -> None:
    """Drop the ``poisoned_product`` fixture's trigger (conftest.py): the cause is fixed."""
    await db.execute("DROP TRIGGER IF EXISTS test_poison ON products")
    await db.execute("DROP FUNCTION IF EXISTS test_poison()")


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


# Network faults a test stages itself --------------------------------------------------------


class BlackHole:
    """A TCP server that accepts every connection, reads what it is sent and never answers: a
    dependency that hangs (a request to it has an unknown outcome: it may have been taken)."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._held: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> BlackHole:
        async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._held.append(writer)
            while await reader.read(65536):
                pass

        self._server = await asyncio.start_server(swallow, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._held:
            writer.close()


def refusing_url() -> str:
    """An address where nothing listens: a call there surely never arrived."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class SwallowingProxy:
    """A TCP relay to ``upstream`` (host, port). Once ``arm(n)`` is called, the next ``n``
    connections that send a chunk containing ``marker`` are black-holed from then on: that
    chunk and everything after it in both directions is dropped, and the sockets stay open (a
    stateful firewall that lost the flow, a NAT timeout). Other connections, new ones included,
    are relayed as usual."""

    def __init__(self, upstream: tuple[str, int], marker: bytes) -> None:
        self.upstream = upstream
        self.marker = marker
        self.port = 0
        self.swallowed = 0
        self._armed = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    def arm(self, connections: int) -> None:
        self._armed = connections

    async def __aenter__(self) -> SwallowingProxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        for writer in self._writers:
            writer.close()

    async def _relay(self, client_r: asyncio.StreamReader,
                     client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(*self.upstream)
        self._writers += [client_w, server_w]
        black_holed = asyncio.Event()

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                       watch: bool) -> None:
            while chunk := await src.read(65536):
                if watch and self._armed and self.marker in chunk and not black_holed.is_set():
                    self._armed -= 1
                    self.swallowed += 1
                    black_holed.set()
                if black_holed.is_set():
                    continue  # dropped, and the connection stays open
                dst.write(chunk)
                await dst.drain()

        tasks = [asyncio.ensure_future(pipe(client_r, server_w, True)),
                 asyncio.ensure_future(pipe(server_r, client_w, False))]
        self._tasks.update(tasks)
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in (client_w, server_w):
            writer.close()


# A fake shop and a target that scripts its faults (the runner's tests) ----------------------


class FakeShop(BaseHTTPRequestHandler):
    """A shop's entry and health checks, as far as the runner needs them (the ``shop_url``
    fixture serves it): 200 for reads, 201 for orders; ``slow`` seconds late when a test says
    so, 503 when ``failing``."""

    failing = False
    slow = 0.0

    def do_GET(self) -> None:
        self._answer(200, {"products": [], "source": "database", "status": "ok"})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer(201, {"status": "confirmed", "source": "database"})

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        if FakeShop.slow:
            time.sleep(FakeShop.slow)
        if FakeShop.failing:
            status, body = 503, {"detail": "down"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


class Scripted:
    """A target whose inject does what the test says: nothing, raise, hang, break the shop."""

    name = "scripted"

    def __init__(self, entry_url: str, inject: str = "nothing") -> None:
        self.entry_url = entry_url
        self.health_urls = [f"{entry_url}/products"]
        self.breaker_urls: dict[str, str] = {}
        self.how = inject
        self.calls: list[str] = []
        self.injected = asyncio.Event()

    async def apply(self, switches: Switches, say: Any) -> None:
        self.calls.append("apply")

    async def reset(self) -> None:
        self.calls.append("reset")

    async def inject(self, fault: Fault, hold: float, say: Any) -> None:
        self.calls.append("inject")
        self.injected.set()
        if self.how == "raise":
            raise LabError("the proxy's admin console did not answer")
        if self.how == "break":
            FakeShop.failing = True
        if self.how == "hang":  # an inject that takes its time (a thread, on the lab)
            await asyncio.sleep(2)
            self.calls.append("inject returned")

    async def restore(self, fault: Fault, say: Any) -> None:
        self.calls.append("restore")
        FakeShop.failing = False

    async def queue_depths(self) -> tuple[int, int]:
        return 0, 0

    async def undecided_orders(self) -> int | None:
        return 0

    async def stock_in_db(self, product_id: int) -> int | None:
        return 100

    async def confirmed_in_db(self, product_id: int) -> int | None:
        return 0

    async def statuses_in_db(self, order_ids: list[str]) -> dict[str, str] | None:
        return {}
