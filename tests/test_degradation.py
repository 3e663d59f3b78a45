"""Graceful degradation against real PostgreSQL, PgBouncer and moto's server: the shop stays
useful while the database is gone and loses nothing when it comes back."""

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from contextlib import AsyncExitStack

import asyncpg
import httpx
import pytest

from catalog.main import app as catalog_app
from chaos_lab.local.aws import ShopResources, client, queue_depth
from chaos_lab.processes import free_port
from conftest import Cluster
from order_worker.app import app as worker_app
from orders.main import app as orders_app
from shop.aws import AWS_ERRORS, open_clients
from shop.product_cache import ProductCache
from shop.settings import Settings
from support import eventually, serve, shop_traffic

DOWN = "postgresql://shop@127.0.0.1:1/shop"  # nothing listens there
FAST = {"SHOP_BREAKER_PROBE_SECONDS": "0.5", "SHOP_MIGRATE_MAX_BACKOFF_SECONDS": "0.5",
        "SHOP_WORKER_WAIT_SECONDS": "1",
        # moto's server runs in this process, sharing its interpreter with the app under test:
        # on a loaded machine a call can take longer than the 0.3 s AWS answers in, and the
        # order's answer is then "unknown", true but not what these tests are about
        "SHOP_AWS_REQUEST_TIMEOUT": "1.0"}


def dlq_depth(moto_url: str, aws: ShopResources) -> int:
    return queue_depth(moto_url, aws.dlq_url)


async def test_outage_under_traffic_loses_nothing(cluster: Cluster, moto_url: str,
                                                  aws: ShopResources,
                                                  aws_env: dict[str, str]) -> None:
    env = {**aws_env, **FAST, "SHOP_DATABASE_URL": cluster.bouncer.dsn(with_password=True),
           "SHOP_DATABASE_READER_URL": cluster.bouncer.dsn(reader=True, with_password=True)}
    async with serve(orders_app, **env) as orders, serve(catalog_app, **env) as catalog, \
            serve(worker_app, **env):
        stop, log = asyncio.Event(), []
        running = asyncio.create_task(shop_traffic(catalog, orders, stop, log))
        await asyncio.sleep(2)  # steady state; the catalog copy gets written
        await asyncio.to_thread(cluster.bouncer.lose_target)
        await asyncio.sleep(8)
        await asyncio.to_thread(cluster.bouncer.restore_target)
        await asyncio.sleep(4)
        stop.set()
        await asyncio.wait_for(running, timeout=10)

        await eventually(lambda: asyncio.to_thread(
            lambda: queue_depth(moto_url, aws.queue_url) == 0), "the queue to drain",
            timeout=30)
        accepted = [e["body"]["order_id"] for e in log
                    if e["kind"] == "write" and e["status"] in (201, 202)]
        finals = {}
        for order_id in accepted:
            response = await orders.get(f"/orders/{order_id}")
            finals[order_id] = response.json()["status"]

    statuses = Counter((e["kind"], e["status"]) for e in log)
    sources = Counter(e["body"].get("source") for e in log if e["kind"] == "read")
    assert not [k for k in statuses if k[1] == 0 or k[1] >= 500], statuses
    assert statuses[("write", 202)] > 0 and statuses[("write", 201)] > 0, statuses
    assert sources["cache"] > 0 and sources["database"] > 0, sources
    assert set(finals.values()) <= {"confirmed", "rejected"}, Counter(finals.values())
    confirmed = sum(1 for s in finals.values() if s == "confirmed")
    stock = int(cluster.primary.psql("SELECT stock FROM products WHERE id = 2"))
    assert stock == 150 - confirmed
    assert dlq_depth(moto_url, aws) == 0


async def run_worker_until_drained(env: dict[str, str], moto_url: str, aws: ShopResources,
                                   ) -> None:
    async with serve(worker_app, **env):
        await eventually(lambda: asyncio.to_thread(
            lambda: queue_depth(moto_url, aws.queue_url) == 0), "the queue to drain",
            timeout=30)


async def test_same_message_twice_changes_stock_once(shop_db: str, db: asyncpg.Connection,
                                                     moto_url: str, aws: ShopResources,
                                                     aws_env: dict[str, str]) -> None:
    order_id = str(uuid.uuid4())
    body = json.dumps({"order_id": order_id, "product_id": 3, "quantity": 2})
    sqs = client("sqs", moto_url)
    for _ in range(2):
        sqs.send_message(QueueUrl=aws.queue_url, MessageBody=body)
    await run_worker_until_drained({**aws_env, **FAST, "SHOP_DATABASE_URL": shop_db},
                                   moto_url, aws)
    assert await db.fetchval("SELECT stock FROM products WHERE id = 3") == 48
    assert await db.fetchval("SELECT status FROM orders WHERE id = $1",
                             uuid.UUID(order_id)) == "confirmed"


async def test_queued_copy_of_a_direct_order_is_replayed(shop_db: str, db: asyncpg.Connection,
                                                         moto_url: str, aws: ShopResources,
                                                         aws_env: dict[str, str]) -> None:
    env = {**aws_env, **FAST, "SHOP_DATABASE_URL": shop_db}
    async with serve(orders_app, **env) as orders:
        direct = await orders.post("/orders", json={"product_id": 2, "quantity": 5},
                                   headers={"Idempotency-Key": "k-1"})
    assert direct.status_code == 201
    body = json.dumps({"order_id": direct.json()["order_id"], "product_id": 2, "quantity": 5})
    client("sqs", moto_url).send_message(QueueUrl=aws.queue_url, MessageBody=body)
    await run_worker_until_drained(env, moto_url, aws)
    assert await db.fetchval("SELECT stock FROM products WHERE id = 2") == 145


async def test_malformed_message_goes_to_the_dlq(shop_db: str, db: asyncpg.Connection,
                                                 moto_url: str, aws: ShopResources,
                                                 aws_env: dict[str, str]) -> None:
    """In one batch with a good order: the bad ones go to the DLQ, the good one is applied,
    recorded and deleted all the same."""
    sqs = client("sqs", moto_url)
    good = str(uuid.uuid4())
    for body in ("not json", json.dumps({"order_id": "x", "product_id": 1, "quantity": 1}),
                 json.dumps({"order_id": str(uuid.uuid4()), "product_id": -1, "quantity": 1}),
                 json.dumps({"order_id": str(uuid.uuid4()), "product_id": 2**31, "quantity": 1}),
                 json.dumps({"order_id": good, "product_id": 4, "quantity": 2})):
        sqs.send_message(QueueUrl=aws.queue_url, MessageBody=body)
    await run_worker_until_drained({**aws_env, **FAST, "SHOP_DATABASE_URL": shop_db},
                                   moto_url, aws)
    assert dlq_depth(moto_url, aws) == 4
    assert await db.fetchval("SELECT status FROM orders WHERE id = $1",
                             uuid.UUID(good)) == "confirmed"
    status = client("dynamodb", moto_url).get_item(
        TableName=aws.status_table, Key={"order_id": {"S": good}}, ConsistentRead=True)
    assert status["Item"]["status"]["S"] == "confirmed"


async def test_rejection_is_recorded_and_never_retried(shop_db: str, db: asyncpg.Connection,
                                                       moto_url: str, aws: ShopResources,
                                                       aws_env: dict[str, str]) -> None:
    env = {**aws_env, **FAST, "SHOP_DATABASE_URL": shop_db}
    order_id = str(uuid.uuid4())
    client("sqs", moto_url).send_message(QueueUrl=aws.queue_url, MessageBody=json.dumps(
        {"order_id": order_id, "product_id": 3, "quantity": 80}))
    await run_worker_until_drained(env, moto_url, aws)
    async with serve(orders_app, **{**env, "SHOP_DATABASE_URL": DOWN}, ready=False) as orders:
        seen_while_down = await orders.get(f"/orders/{order_id}")
    assert seen_while_down.json()["status"] == "rejected"
    assert seen_while_down.json()["reason"] == "insufficient stock"
    assert await db.fetchval("SELECT stock FROM products WHERE id = 3") == 50
    assert dlq_depth(moto_url, aws) == 0


async def test_database_down_order_is_202_and_pending_until_the_worker_decides(
        shop_db: str, db: asyncpg.Connection, moto_url: str, aws: ShopResources,
        aws_env: dict[str, str]) -> None:
    env = {**aws_env, **FAST}
    async with serve(orders_app, ready=False, **env, SHOP_DATABASE_URL=DOWN) as orders:
        queued = await orders.post("/orders", json={"product_id": 2, "quantity": 4})
        assert queued.status_code == 202, queued.text
        order_id = queued.json()["order_id"]
        assert queued.json()["status"] == "pending"
        pending = await orders.get(f"/orders/{order_id}")
        assert pending.status_code == 200 and pending.json()["status"] == "pending"
        # An order the buffer never saw may well be in the unreachable database: not a 404.
        unknown = await orders.get(f"/orders/{uuid.uuid4()}")
        assert unknown.status_code == 503, unknown.text
    await run_worker_until_drained({**env, "SHOP_DATABASE_URL": shop_db}, moto_url, aws)
    async with serve(orders_app, **env, SHOP_DATABASE_URL=shop_db) as orders:
        decided = await orders.get(f"/orders/{order_id}")
    assert decided.json()["status"] == "confirmed"
    assert await db.fetchval("SELECT stock FROM products WHERE id = 2") == 146


async def test_queue_unreachable_still_accepts_the_order_durably(
        shop_db: str, db: asyncpg.Connection, moto_url: str, aws: ShopResources,
        aws_env: dict[str, str]) -> None:
    """The order table is the order, the queue only a wake-up: with no queue to send to, the
    order is still accepted (its record written), and the worker's sweep applies it."""
    env = {**aws_env, **FAST, "SHOP_ORDER_QUEUE_URL": aws_env["SHOP_ORDER_QUEUE_URL"] + "-gone",
           "SHOP_WORKER_SWEEP_SECONDS": "0.5", "SHOP_WORKER_SWEEP_AFTER_SECONDS": "0"}
    async with serve(orders_app, ready=False, **env, SHOP_DATABASE_URL=DOWN) as orders:
        response = await orders.post("/orders", json={"product_id": 2, "quantity": 1},
                                     headers={"Idempotency-Key": "never-queued"})
        unknown = await orders.get(f"/orders/{uuid.uuid4()}")
    assert response.status_code == 202, response.text
    assert unknown.status_code == 503  # the database is out: unknown, not "not found"
    assert queue_depth(moto_url, aws.queue_url) == 0
    async with serve(worker_app, **{**env, "SHOP_ORDER_QUEUE_URL": aws.queue_url},
                     SHOP_DATABASE_URL=shop_db):
        await eventually(lambda: db.fetchval("SELECT status FROM orders WHERE id = $1",
                                             uuid.UUID(response.json()["order_id"])),
                         "the sweep to apply it", timeout=20)
    assert await db.fetchval("SELECT stock FROM products WHERE id = 2") == 149


async def test_order_table_unreachable_is_never_202(
        moto_url: str, aws: ShopResources, aws_env: dict[str, str]) -> None:
    """No record, no 202: with the order table refusing the write nothing is accepted and
    nothing is sent. Without a key that is 503 (nothing happened); with one, "unknown": an
    earlier request with the key may have been accepted, and that cannot be looked up."""
    env = {**aws_env, **FAST, "SHOP_ORDER_STATUS_TABLE": aws.status_table + "-gone"}
    async with serve(orders_app, ready=False, **env, SHOP_DATABASE_URL=DOWN) as orders:
        keyless = await orders.post("/orders", json={"product_id": 2, "quantity": 3})
        keyed = await orders.post("/orders", json={"product_id": 2, "quantity": 3},
                                  headers={"Idempotency-Key": "refused"})
    assert keyless.status_code == 503, keyless.text
    assert keyless.json() == {"error": "database unavailable, order table refused the order"}
    assert keyless.headers["Retry-After"] == "1"
    assert keyed.status_code == 504, keyed.text
    assert keyed.json()["status"] == "unknown" and keyed.headers["Retry-After"] == "1"
    await asyncio.sleep(0.5)  # a wake-up would be on its way by now
    assert queue_depth(moto_url, aws.queue_url) == 0


async def test_empty_cache_is_503_and_breaker_in_deep_health(aws_env: dict[str, str]) -> None:
    async with serve(catalog_app, ready=False, **aws_env, **FAST,
                     SHOP_DATABASE_URL=DOWN) as catalog:
        response = await catalog.get("/products")
        deep = await catalog.get("/health/deep")
        metrics = await catalog.get("/metrics")
    assert response.status_code == 503
    assert response.json() == {"error": "database unavailable, cache empty"}
    assert deep.status_code == 503 and deep.json()["cache_table"] == "ok"
    assert "breaker" in deep.json()
    assert "shop_breaker_state" in metrics.text


async def test_worker_does_not_receive_while_the_database_is_down(
        moto_url: str, aws: ShopResources, aws_env: dict[str, str]) -> None:
    sqs = client("sqs", moto_url)
    sqs.send_message(QueueUrl=aws.queue_url, MessageBody=json.dumps(
        {"order_id": str(uuid.uuid4()), "product_id": 2, "quantity": 1}))
    async with serve(worker_app, ready=False, **aws_env, **FAST, SHOP_DATABASE_URL=DOWN) as w:
        await asyncio.sleep(3)
        health = await w.get("/health")
    attributes = sqs.get_queue_attributes(QueueUrl=aws.queue_url, AttributeNames=["All"])
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "1"  # never received
    assert health.status_code == 200


async def test_worker_process_stops_cleanly_on_sigterm(shop_db: str,
                                                       aws_env: dict[str, str]) -> None:
    port = free_port()
    env = {**aws_env, **FAST, "SHOP_DATABASE_URL": shop_db,
           "SHOP_WORKER_HEALTH_PORT": str(port)}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "order_worker", env=env,
                                                stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL)
    try:
        async def healthy() -> bool:
            try:
                async with httpx.AsyncClient() as http:
                    return (await http.get(f"http://127.0.0.1:{port}/health")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(healthy, "the worker's health port", timeout=20)
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), timeout=15)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert code == 0


async def test_redrive_moves_the_dlq_back(moto_url: str, aws: ShopResources,
                                          aws_env: dict[str, str]) -> None:
    sqs = client("sqs", moto_url)
    sqs.send_message(QueueUrl=aws.dlq_url, MessageBody="{}")
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "order_worker", "redrive"],
        env=aws_env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "moved 1 message" in result.stdout
    assert queue_depth(moto_url, aws.queue_url) == 1 and dlq_depth(moto_url, aws) == 0


async def test_cache_copy_outlives_dynamodb_going_away(
        aws: ShopResources, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB timing out too (moto saturated, a regional blip): the copy last read keeps
    being served, its age growing; a process that never read one has nothing to serve."""
    for name, value in aws_env.items():
        monkeypatch.setenv(name, value)
    settings = Settings(aws_timeout=0.5)
    products = [{"id": 1, "name": "Widget", "price": 9.5, "stock": 3}]
    async with AsyncExitStack() as stack:
        (dynamodb,) = await open_clients(stack, settings, "dynamodb")
        cache = ProductCache(dynamodb, aws.cache_table, refresh_seconds=1)
        await cache.write(products)
        assert (await cache.read_all())[0] == products

        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing
        (gone,) = await open_clients(stack, settings, "dynamodb")
        cache.dynamodb = gone
        await asyncio.sleep(1.1)  # past the one-second memo: the next read scans again
        stale, age = await cache.read_all()
        assert stale == products and age is not None and age >= 1

        cold = ProductCache(gone, aws.cache_table, refresh_seconds=1)
        with pytest.raises(AWS_ERRORS):
            await cold.read_all()


async def test_a_stale_copy_is_served_at_once_while_dynamodb_hangs(
        aws: ShopResources, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Stale-while-revalidate: DynamoDB accepting connections and never answering (frozen,
    or a black-holed route) costs no customer a wait when a copy exists; the rescan runs in
    the background, bounded by its own timeout, one at a time."""
    for name, value in aws_env.items():
        monkeypatch.setenv(name, value)
    products = [{"id": 1, "name": "Widget", "price": 9.5, "stock": 3}]
    connections = 0

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.read()  # holds the connection until the client gives up

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, AsyncExitStack() as stack:
        (dynamodb,) = await open_clients(stack, Settings(), "dynamodb")
        cache = ProductCache(dynamodb, aws.cache_table, refresh_seconds=60, scan_timeout=0.5)
        await cache.write(products)
        assert (await cache.read_all())[0] == products
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        (hung,) = await open_clients(stack, Settings(aws_timeout=5), "dynamodb")
        cache.dynamodb = hung
        await asyncio.sleep(1.1)  # past the one-second memo: the next read wants a rescan
        for _ in range(20):
            started = time.monotonic()
            served, _ = await cache.read_all(deadline=asyncio.get_running_loop().time() + 4)
            assert served == products
            assert time.monotonic() - started < 0.05
            await asyncio.sleep(0.05)
        assert connections == 1  # one rescan in flight at a time, not one per read
        await asyncio.sleep(0.6)  # the rescan timed out: the copy stays, aged
        served, age = await cache.read_all()
        assert served == products and age is not None and age >= 1.5


async def test_long_poll_outlasts_the_read_timeout(
        aws: ShopResources, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's receive waits up to SHOP_WORKER_WAIT_SECONDS on an empty queue: a read
    timeout shorter than that turns every quiet poll into 'queue unreachable'."""
    for name, value in aws_env.items():
        monkeypatch.setenv(name, value)
    settings = Settings(aws_timeout=0.5, worker_wait_seconds=2)
    receive = {"QueueUrl": aws.queue_url, "WaitTimeSeconds": settings.worker_wait_seconds}
    async with AsyncExitStack() as stack:
        (plain,) = await open_clients(stack, settings, "sqs")
        (polling,) = await open_clients(stack, settings, "sqs",
                                        long_poll_seconds=settings.worker_wait_seconds)
        with pytest.raises(AWS_ERRORS):
            await plain.receive_message(**receive)
        started = time.monotonic()
        assert (await polling.receive_message(**receive)).get("Messages", []) == []
        assert time.monotonic() - started >= 1.5  # it did wait: moto long-polls too


async def test_catalog_serves_its_last_database_read_when_dynamodb_never_answered(
        aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The database and AWS out together (the aws-outage fault) before the process ever read
    the DynamoDB copy: what it last read from the database is served, aged, not a 503."""
    for name, value in aws_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing there
    products = [{"id": 1, "name": "Widget", "price": 9.5, "stock": 3}]
    async with AsyncExitStack() as stack:
        (gone,) = await open_clients(stack, Settings(aws_timeout=0.5), "dynamodb")
        cache = ProductCache(gone, "never-read", refresh_seconds=60)
        with pytest.raises(AWS_ERRORS):
            await cache.read_all()  # nothing read from the database yet: nothing to serve
        cache.offer(products)
        served, age = await cache.read_all()
    assert served == products and age is not None and age >= 0
