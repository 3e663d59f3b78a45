"""Product routes. SQL first: each query is written out where it is used. When the reader is
out (breaker open, retries exhausted, schema not ready) the answer comes from the DynamoDB copy
and says so: ``"source": "cache"`` and the copy's age.

The product list, the hottest read, is kept encoded for ``SHOP_CATALOG_MAX_AGE_SECONDS`` (one
second by default; 0 turns it off): one database read a second per process however many
customers browse, answered with an ``Age`` header. Stock shown in a list may be that old;
orders check stock in their own transaction, so it can never oversell. While the list is fresh
``RecentListMiddleware`` answers it before FastAPI's routing and dependency solving, which were
two thirds of such a request's CPU in the profile (BENCHMARKS.md); the route reads the
database when it is not.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Path, Request, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from shop.aws import AWS_ERRORS
from shop.errors import DatabaseNotReady, DatabaseUnavailable, FallbackUnavailable, ProductNotFound
from shop.metrics import FALLBACKS
from shop.product_cache import ProductCache
from shop.schemas import ProductList, ProductPublic, errors
from shop.web import SERVED_BY, DeadlineDep, EndpointDep, database_deadline

router = APIRouter(prefix="/products", tags=["products"])

ProductId = Annotated[int, Path(ge=1, le=2**31 - 1)]
PRODUCT_COLUMNS = "id, name, price::float8 AS price, stock"
DB_OUT = (DatabaseUnavailable, DatabaseNotReady)


async def product_cache(request: Request) -> ProductCache | None:
    cache: ProductCache | None = request.app.state.cache
    return cache


CacheDep = Annotated[ProductCache | None, Depends(product_cache)]


async def select_products(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(f"SELECT {PRODUCT_COLUMNS} FROM products ORDER BY id")
    return [dict(row) for row in rows]


class RecentList:
    """The last product list read from the database, encoded, for ``max_age`` seconds.
    One read at a time: requests that find it stale while a read is in flight share that read
    and its outcome (a failure sends each of them to the fallback), so nothing queues up
    behind a failing database longer than one read takes."""

    def __init__(self, max_age: float) -> None:
        self.max_age = max_age
        self.body = b""
        self.read_at = float("-inf")
        self._reading: asyncio.Future[None] | None = None

    def fresh(self) -> bool:
        return time.monotonic() - self.read_at < self.max_age

    async def refresh(self, read: Callable[[], Awaitable[bytes]], deadline: float) -> None:
        """Raises TimeoutError at ``deadline``; the shared read goes on for the others."""
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._read(read))
        async with asyncio.timeout_at(deadline):
            await asyncio.shield(self._reading)

    async def _read(self, read: Callable[[], Awaitable[bytes]]) -> None:
        try:
            self.body = await read()
            self.read_at = time.monotonic()
        finally:
            self._reading = None

    def response(self) -> Response:
        return Response(self.body, media_type="application/json", headers={"Age": self.age()})

    def age(self) -> str:
        return str(int(time.monotonic() - self.read_at))


class RecentListMiddleware:
    """Pure ASGI: ``GET /products`` while the recent list is fresh is answered here, with the
    same bytes and headers the route gives; everything else goes on to the app. Sits inside
    ``RequestGuard``, so these answers are counted and timed like the others."""

    ROUTE = SimpleNamespace(path=router.prefix)  # the list route's path and metrics label

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        recent: RecentList | None = None
        if (scope["type"] == "http" and scope["path"] == self.ROUTE.path
                and scope["method"] == "GET"):
            recent = getattr(scope["app"].state, "recent_list", None)
        if recent is None or not recent.fresh():
            await self.app(scope, receive, send)
            return
        scope["route"] = self.ROUTE
        body = recent.body
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-length", str(len(body)).encode()),
            (b"content-type", b"application/json"),
            (b"age", recent.age().encode()),
        ]})
        await send({"type": "http.response.body", "body": body})


async def recent_list(request: Request) -> RecentList:
    recent: RecentList = request.app.state.recent_list
    return recent


RecentDep = Annotated[RecentList, Depends(recent_list)]


@router.get("", response_model=ProductList, response_model_exclude_none=True,
            responses=errors(503))
async def list_products(reader: EndpointDep, cache: CacheDep, recent: RecentDep,
                        deadline: DeadlineDep) -> Response | ProductList:
    async def read() -> bytes:
        # The deadline of the request that started the read: the others share it.
        products, latency_ms = await reader.timed(
            select_products, deadline=database_deadline(deadline, cache is not None))
        if cache is not None:
            cache.offer(products)
        return ProductList.model_validate(
            {"products": products, "count": len(products), "source": "database",
             "served_by": SERVED_BY, "db_latency_ms": latency_ms}).model_dump_json().encode()

    if not recent.fresh():
        try:
            await recent.refresh(read, database_deadline(deadline, cache is not None))
        except (*DB_OUT, TimeoutError) as exc:
            if cache is None:
                if isinstance(exc, TimeoutError):
                    raise DatabaseUnavailable("reader", exc) from exc
                raise
            products, age = await from_cache(cache, deadline)
            return ProductList.model_validate(
                {"products": products, "count": len(products), "source": "cache",
                 "cache_age_seconds": age, "served_by": SERVED_BY})
    return recent.response()


@router.get("/{product_id}", response_model=ProductPublic, response_model_exclude_none=True,
            responses=errors(404, 422, 503))
async def get_product(product_id: ProductId, reader: EndpointDep, cache: CacheDep,
                      deadline: DeadlineDep) -> ProductPublic:
    async def select_product(conn: asyncpg.Connection) -> dict[str, Any]:
        row = await conn.fetchrow(f"SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1",
                                  product_id)
        if row is None:
            raise ProductNotFound()
        return dict(row)

    try:
        product, latency_ms = await reader.timed(
            select_product, deadline=database_deadline(deadline, cache is not None))
    except DB_OUT:
        if cache is None:
            raise
        products, age = await from_cache(cache, deadline)
        cached = next((p for p in products if p["id"] == product_id), None)
        if cached is None:
            # Not in the copy is not "no such product": the copy may predate it.
            raise FallbackUnavailable("database unavailable, product not in the cached "
                                      "catalog") from None
        return ProductPublic(**cached, source="cache", cache_age_seconds=age,
                             served_by=SERVED_BY)
    if cache is not None:
        cache.offer([product])
    return ProductPublic(**product, source="database", served_by=SERVED_BY,
                         db_latency_ms=latency_ms)


async def from_cache(cache: ProductCache, deadline: float,
                     ) -> tuple[list[dict[str, Any]], float | None]:
    """The cached catalog; the cache being unreachable or empty too is a 503."""
    try:
        products, age = await cache.read_all(deadline)
    except AWS_ERRORS as exc:
        raise FallbackUnavailable("database unavailable, cache unreachable") from exc
    if not products:
        raise FallbackUnavailable("database unavailable, cache empty")
    FALLBACKS.labels(kind="catalog_cache").inc()
    return products, age
