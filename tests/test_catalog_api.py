"""The catalog's HTTP contract against a real PostgreSQL."""

import asyncio
import os
import re
import socket
from types import SimpleNamespace

import asyncpg
from starlette.types import Message, Receive, Scope, Send

from catalog.main import app
from catalog.routes import RecentList, RecentListMiddleware
from support import metric, serve


async def test_lists_the_ten_seeded_products(shop_db: str) -> None:
    async with serve(app, SHOP_DATABASE_URL=shop_db) as client:
        response = await client.get("/products")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 10 and body["source"] == "database"
    hub = next(p for p in body["products"] if p["id"] == 2)
    assert hub == {"id": 2, "name": "USB-C Hub", "price": 34.99, "stock": 150}
    assert body["db_latency_ms"] >= 0
    # the answering process by a random id, never its address, host name or pid
    assert re.fullmatch(r"[0-9a-f]{8}", body["served_by"])
    assert socket.gethostname() not in body["served_by"]
    assert str(os.getpid()) not in body["served_by"]


async def test_one_product_404_and_422(shop_db: str) -> None:
    async with serve(app, SHOP_DATABASE_URL=shop_db) as client:
        found = await client.get("/products/3")
        unknown = await client.get("/products/999")
        not_int = await client.get("/products/abc")
        huge = await client.get("/products/99999999999999999999")
        negative = await client.get("/products/-1")
    assert found.status_code == 200 and found.json()["name"] == "Mechanical Keyboard"
    assert found.json()["stock"] == 50
    assert unknown.status_code == 404 and unknown.json() == {"error": "product not found"}
    assert not_int.status_code == 422 and "detail" in not_int.json()
    assert huge.status_code == 422
    assert negative.status_code == 422


async def test_health_and_deep_health(shop_db: str) -> None:
    async with serve(app, SHOP_DATABASE_URL=shop_db) as client:
        live = await client.get("/health")
        deep = await client.get("/health/deep")
        unknown_route = await client.get("/nope")
    assert live.status_code == 200 and live.json()["status"] == "ok"
    assert deep.status_code == 200
    assert deep.json()["status"] == "healthy" and deep.json()["database"] == "connected"
    assert unknown_route.status_code == 404 and unknown_route.json() == {"error": "Not Found"}


async def test_reader_url_is_used_for_reads(shop_db: str) -> None:
    # A reader URL that leads nowhere: reads must fail over it, proving they use it.
    async with serve(app, ready=False, SHOP_DATABASE_URL=shop_db,
                     SHOP_DATABASE_READER_URL="postgresql://shop@127.0.0.1:1/shop") as client:
        response = await client.get("/products")
    assert response.status_code == 503
    assert response.json() == {"error": "database not ready"}


# GET /products answered 200, as RequestGuard labels it.
LISTED = {"route": "/products", "method": "GET", "status": "200"}


async def test_product_list_is_kept_for_its_max_age(shop_db: str, db: asyncpg.Connection) -> None:
    """One database read per max age however many customers browse; 0 reads every time."""
    async with serve(app, SHOP_DATABASE_URL=shop_db, SHOP_CATALOG_MAX_AGE_SECONDS="30") as client:
        before = metric(await client.get("/metrics"), "shop_http_requests_total", **LISTED)
        first = await client.get("/products")
        await db.execute("UPDATE products SET stock = 149 WHERE id = 2")
        second = await client.get("/products")  # answered by RecentListMiddleware (below)
        after = metric(await client.get("/metrics"), "shop_http_requests_total", **LISTED)
    assert first.content == second.content and second.headers["age"] in ("0", "1")
    assert second.headers["content-type"] == first.headers["content-type"]
    assert second.json()["source"] == "database"
    assert after - before == 2  # both counted under the route's own label
    async with serve(app, SHOP_DATABASE_URL=shop_db, SHOP_CATALOG_MAX_AGE_SECONDS="0") as client:
        fresh = await client.get("/products")
        await db.execute("UPDATE products SET stock = 148 WHERE id = 2")
        fresher = await client.get("/products")
    stock = {r.json()["products"][1]["stock"] for r in (fresh, fresher)}
    assert stock == {149, 148}


async def test_fresh_list_is_answered_before_the_app_and_a_stale_one_is_not() -> None:
    """RecentListMiddleware on its own: the app behind it must not be reached while the list
    is fresh, and must be once it is stale."""
    reached: list[str] = []

    async def behind(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def encoded() -> bytes:
        return b'{"products":[]}'

    async def get(recent: RecentList, path: str = "/products") -> list[Message]:
        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        async def receive() -> Message:
            return {"type": "http.request", "body": b""}

        scope = {"type": "http", "method": "GET", "path": path,
                 "app": SimpleNamespace(state=SimpleNamespace(recent_list=recent))}
        await RecentListMiddleware(behind)(scope, receive, send)
        return sent

    fresh = RecentList(max_age=30)
    await fresh.refresh(encoded, deadline=asyncio.get_running_loop().time() + 5)
    answered = await get(fresh)
    assert reached == []
    assert answered[0]["status"] == 200 and answered[1]["body"] == b'{"products":[]}'
    assert dict(answered[0]["headers"])[b"age"] == b"0"
    await get(fresh, "/products/1")
    stale = RecentList(max_age=0)
    await stale.refresh(encoded, deadline=asyncio.get_running_loop().time() + 5)
    assert (await get(stale))[0]["status"] == 204
    assert reached == ["/products/1", "/products"]
