"""Admission: each process admits at most its adaptive limit of requests at once, a limit that
follows the admitted requests' latency, and sheds the rest at once (503, Retry-After) before
any work is spent on them; time queued before the process counts against a request."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx

from orders.main import app as orders_app
from shop.admission import WINDOW_SECONDS, AdaptiveLimit
from shop.clients import Quota
from support import metric, serve


def serve_windows(limit: AdaptiveLimit, windows: int, capacity: int, service: float = 0.010,
                  offered: int | None = None, start: float = 0.0) -> tuple[float, float]:
    """A process that works ``capacity`` requests at once in ``service`` seconds each: beyond
    that, requests queue inside it and wait (latency grows with what is admitted). As many
    are offered as the limit admits, or ``offered`` at most. Returns the clock and the last
    window's latency."""
    now, latency = start, service
    for _ in range(windows):
        in_flight = min(int(limit.limit), offered if offered is not None else 10**6)
        latency = service * max(1.0, in_flight / capacity)
        for _ in range(5):
            limit.admits(in_flight - 1)
            limit.observe(latency, now)
        now += WINDOW_SECONDS
    return now, latency


def test_past_capacity_the_limit_holds_the_latency_at_its_target() -> None:
    """Throughput is concurrency over latency: the limit settles where latency meets the
    target, the process at its capacity (never past it), whatever the capacity is."""
    for capacity in (10, 40):
        limit = AdaptiveLimit(target=0.05, limit=16)
        _, latency = serve_windows(limit, 300, capacity)
        # past capacity (requests queue: slower than the 10 ms of service), held near 50 ms
        assert 0.010 < latency <= 0.06, (capacity, latency, limit.limit)


def test_the_limit_does_not_grow_when_it_is_not_used() -> None:
    limit = AdaptiveLimit(limit=20)
    serve_windows(limit, 100, capacity=1000, offered=3)
    assert limit.limit == 20


def test_never_below_the_floor_nor_above_the_ceiling() -> None:
    limit = AdaptiveLimit(limit=100, min_limit=8, max_limit=512)
    now, _ = serve_windows(limit, 200, capacity=1, service=0.5)  # every request too slow
    assert limit.limit == 8
    serve_windows(limit, 200, capacity=10**6, start=now)  # nothing ever queues
    assert limit.limit == 512


def test_once_the_overload_is_gone_the_limit_recovers() -> None:
    """No metastable state: after a long overload (a slow dependency: every request slow),
    normal latency again brings the limit back up within seconds."""
    limit = AdaptiveLimit(limit=64)
    now, _ = serve_windows(limit, 100, capacity=40)
    before = limit.limit
    now, _ = serve_windows(limit, 300, capacity=40, service=0.3, start=now)  # 30 s
    assert limit.limit == limit.min_limit
    serve_windows(limit, 30, capacity=40, start=now)  # 3 s of normal service
    assert limit.limit >= 0.8 * before


async def test_past_the_limit_requests_are_shed_at_once_and_health_never_is(
        shop_db: str, db: asyncpg.Connection) -> None:
    """Orders on a row another session holds: the limit (a ceiling of 4 here) fills with
    requests waiting at the lock; the next ones are answered 503 with Retry-After at once,
    the health check still answers, and the limit is in /metrics."""
    locker = await asyncpg.connect(shop_db)
    held = locker.transaction()
    await held.start()
    await locker.execute("SELECT 1 FROM products WHERE id = 5 FOR UPDATE")
    try:
        async with serve(orders_app, SHOP_DATABASE_URL=shop_db, SHOP_ADMISSION="static",
                         SHOP_MAX_CONCURRENT_REQUESTS="4", SHOP_ENABLE_DEGRADATION="false",
                         timeout=10) as orders:
            waiting = [asyncio.create_task(orders.post(
                "/orders", json={"product_id": 5, "quantity": 1})) for _ in range(4)]
            await asyncio.sleep(0.5)
            started = time.monotonic()
            shed = await orders.post("/orders", json={"product_id": 6, "quantity": 1})
            shed_in = time.monotonic() - started
            health = await orders.get("/health")
            await held.rollback()
            answers = await asyncio.gather(*waiting)
            metrics = await orders.get("/metrics")
    finally:
        await locker.close()
    assert shed.status_code == 503 and shed.headers["retry-after"] == "1"
    assert shed.json() == {"error": "overloaded, try again shortly"}
    assert shed_in < 0.1, shed_in
    assert health.status_code == 200
    assert {a.status_code for a in answers} <= {201, 503, 504}
    assert metric(metrics, "shop_requests_shed_total", why="limit") >= 1
    assert await db.fetchval("SELECT count(*) FROM orders WHERE product_id = 6") == 0


async def test_a_burst_past_the_adaptive_limit_is_shed_honestly(
        shop_db: str, db: asyncpg.Connection) -> None:
    """300 orders at once on a cold process (its limit starts at 32): every answer is 201, 409
    or a shed 503 with Retry-After, and a shed order did nothing: the stock went down by the
    201s alone, and only they are rows."""
    await db.execute("UPDATE products SET stock = 50 WHERE id = 3")
    async with serve(orders_app, SHOP_DATABASE_URL=shop_db, SHOP_ENABLE_DEGRADATION="false",
                     timeout=30) as orders:
        answers = await asyncio.gather(*(
            orders.post("/orders", json={"product_id": 3, "quantity": 1}) for _ in range(300)))
    codes = [a.status_code for a in answers]
    shed = [a for a in answers if a.status_code == 503]
    assert set(codes) <= {201, 409, 503}, codes
    assert shed, "a burst of 300 on a limit of 32 was not shed at all"
    assert all(a.headers["retry-after"] == "1" for a in shed)
    assert await db.fetchval("SELECT stock FROM products WHERE id = 3") == 50 - codes.count(201)
    assert await db.fetchval(
        "SELECT count(*) FROM orders WHERE product_id = 3") == codes.count(201)


async def test_a_request_that_queued_too_long_before_the_process_is_shed(
        shop_db: str, db: asyncpg.Connection) -> None:
    """nginx says when the request arrived (X-Request-Start): one that already waited past
    SHOP_MAX_QUEUE_SECONDS is shed unseen; one that waited less gets the rest of its budget."""
    async with serve(orders_app, SHOP_DATABASE_URL=shop_db, SHOP_MAX_QUEUE_SECONDS="0.5",
                     SHOP_ENABLE_DEGRADATION="false") as orders:
        stale = await orders.post("/orders", json={"product_id": 7, "quantity": 1},
                                  headers={"X-Request-Start": f"t={time.time() - 2:.3f}"})
        fresh = await orders.post("/orders", json={"product_id": 7, "quantity": 1},
                                  headers={"X-Request-Start": f"t={time.time() - 0.1:.3f}"})
        metrics = await orders.get("/metrics")
    assert stale.status_code == 503 and fresh.status_code == 201
    assert metric(metrics, "shop_requests_shed_total", why="queued") >= 1
    assert await db.fetchval("SELECT count(*) FROM orders WHERE product_id = 7") == 1


async def test_the_adaptive_limit_is_exported(shop_db: str) -> None:
    async with serve(orders_app, SHOP_DATABASE_URL=shop_db) as orders:
        await orders.get("/orders/00000000-0000-0000-0000-000000000000")
        metrics = await orders.get("/metrics")
    assert 8 <= metric(metrics, "shop_admission_limit", limit="http") <= 512
    assert isinstance(metrics, httpx.Response)


# Each client's quota -------------------------------------------------------------------


def test_a_clients_quota_is_a_token_bucket_of_its_own() -> None:
    quota = Quota(rate=2, burst=3)
    assert [quota.take("ann", now=0.0) for _ in range(3)] == [0, 0, 0]  # the burst
    assert quota.take("ann", now=0.0) == 0.5  # empty: a token in half a second
    assert quota.take("bob", now=0.0) == 0  # another client, another bucket
    assert quota.take("ann", now=0.5) == 0  # refilled
    quota.MAX_CLIENTS = 2
    quota.take("cid", now=1.0)  # a third client: the least recently used bucket goes
    assert set(quota._buckets) == {"ann", "cid"}


async def test_a_client_past_its_quota_gets_429_and_nothing_happens(
        shop_db: str, db: asyncpg.Connection) -> None:
    ann = {"Authorization": "Bearer ann"}
    async with serve(orders_app, SHOP_DATABASE_URL=shop_db, SHOP_ENABLE_DEGRADATION="false",
                     SHOP_CLIENT_ORDERS_PER_SECOND="1", SHOP_CLIENT_ORDERS_BURST="2") as orders:
        answers = [await orders.post("/orders", json={"product_id": 8, "quantity": 1},
                                     headers=ann) for _ in range(3)]
        bob = await orders.post("/orders", json={"product_id": 8, "quantity": 1},
                                headers={"Authorization": "Bearer bob"})
    assert [a.status_code for a in answers] == [201, 201, 429]
    assert answers[2].headers["retry-after"] == "1"
    assert answers[2].json() == {"error": "too many orders from this client, try again shortly"}
    assert bob.status_code == 201
    assert await db.fetchval("SELECT count(*) FROM orders WHERE product_id = 8") == 3
