"""Every answer is true, whatever fails: 201 is committed, 202 is durable or held until it is,
4xx and 503 mean nothing will happen. Each test stages a fault against the real parts
(PostgreSQL, moto's server over HTTP) and checks the answers against what really happened."""

import asyncio
import os
import signal
import time
import uuid
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from catalog.main import app as catalog_app
from chaos_lab.local.aws import MotoServer, ShopResources, create_resources, queue_depth
from chaos_lab.local.postgres import PostgresNode
from chaos_lab.processes import free_port
from order_worker.app import app as worker_app
from orders.main import app as orders_app
from shop.aws import open_clients
from shop.db import Endpoint, is_auth_error, is_connection_error
from shop.errors import DatabaseUnavailable, IdempotencyKeyReused
from shop.order_records import OrderRecords
from shop.orders import OrderRequest, place_order
from shop.settings import Settings
from support import eventually, serve, shop_traffic

DOWN = "postgresql://shop@127.0.0.1:1/shop"  # nothing listens there
FAST = {"SHOP_BREAKER_PROBE_SECONDS": "0.5", "SHOP_MIGRATE_MAX_BACKOFF_SECONDS": "0.5",
        "SHOP_WORKER_WAIT_SECONDS": "1"}


async def drain(env: dict[str, str], moto_url: str, queue_url: str) -> None:
    async with serve(worker_app, **env):
        await eventually(lambda: asyncio.to_thread(
            lambda: queue_depth(moto_url, queue_url) == 0), "the queue to drain", timeout=60)


# Idempotency-Key bound to the request's body --------------------------------------------


async def test_reused_key_with_another_body_is_422_never_the_first_order(
        shop_db: str, db: asyncpg.Connection) -> None:
    key = {"Idempotency-Key": "cart-7"}
    async with serve(orders_app, SHOP_DATABASE_URL=shop_db) as orders:
        first = await orders.post("/orders", json={"product_id": 2, "quantity": 1}, headers=key)
        other = await orders.post("/orders", json={"product_id": 2, "quantity": 5}, headers=key)
        again = await orders.post("/orders", json={"product_id": 2, "quantity": 1}, headers=key)
        kept = await orders.get(f"/orders/{first.json()['order_id']}")
    assert first.status_code == 201 and again.status_code == 201
    assert again.json()["order_id"] == first.json()["order_id"]
    assert other.status_code == 422, other.text
    assert other.json() == {"error": "Idempotency-Key already used for a different request"}
    assert kept.json()["quantity"] == 1 and kept.json()["status"] == "confirmed"
    assert await db.fetchval("SELECT stock FROM products WHERE id = 2") == 149
    assert await db.fetchval("SELECT count(*) FROM orders") == 1


async def test_reused_key_while_queued_is_422_and_sends_nothing(
        shop_db: str, db: asyncpg.Connection, moto_url: str, aws: ShopResources,
        aws_env: dict[str, str]) -> None:
    env = {**aws_env, **FAST}
    key = {"Idempotency-Key": "cart-8"}
    async with serve(orders_app, ready=False, **env, SHOP_DATABASE_URL=DOWN) as orders:
        first = await orders.post("/orders", json={"product_id": 3, "quantity": 2}, headers=key)
        other = await orders.post("/orders", json={"product_id": 3, "quantity": 9}, headers=key)
        repeat = await orders.post("/orders", json={"product_id": 3, "quantity": 2},
                                   headers=key)
    assert first.status_code == 202 and repeat.status_code == 202, (first.text, repeat.text)
    assert repeat.json()["order_id"] == first.json()["order_id"]
    assert other.status_code == 422, other.text
    await drain({**env, "SHOP_DATABASE_URL": shop_db}, moto_url, aws.queue_url)
    rows = await db.fetch("SELECT id, quantity, status FROM orders")
    assert [(str(r["id"]), r["quantity"], r["status"]) for r in rows] == [
        (first.json()["order_id"], 2, "confirmed")]
    assert await db.fetchval("SELECT stock FROM products WHERE id = 3") == 48


async def test_worker_refuses_a_key_first_used_directly(
        shop_db: str, db: asyncpg.Connection, moto_url: str, aws: ShopResources,
        aws_env: dict[str, str]) -> None:
    """The key was used for a 201 while the database was up; reused with another body during
    an outage it can only be queued (the database is out of sight). The worker refuses it, and
    the customer learns it through the 202's order id: rejected, with the reason."""
    env = {**aws_env, **FAST}
    key = {"Idempotency-Key": "cart-9"}
    async with serve(orders_app, **env, SHOP_DATABASE_URL=shop_db) as orders:
        direct = await orders.post("/orders", json={"product_id": 4, "quantity": 1},
                                   headers=key)
    async with serve(orders_app, ready=False, **env, SHOP_DATABASE_URL=DOWN) as orders:
        queued = await orders.post("/orders", json={"product_id": 4, "quantity": 3},
                                   headers=key)
    assert direct.status_code == 201 and queued.status_code == 202
    assert queued.json()["order_id"] != direct.json()["order_id"]
    await drain({**env, "SHOP_DATABASE_URL": shop_db}, moto_url, aws.queue_url)
    async with serve(orders_app, **env, SHOP_DATABASE_URL=shop_db) as orders:
        refused = await orders.get(f"/orders/{queued.json()['order_id']}")
    assert refused.json()["status"] == "rejected", refused.text
    assert refused.json()["reason"] == "Idempotency-Key already used for a different request"
    assert await db.fetchval("SELECT stock FROM products WHERE id = 4") == 199


# COMMIT is never cancelled by the statement timeout ---------------------------------------


def sync_standby(node: PostgresNode, names: str) -> None:
    node.psql(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'", database="postgres")
    node.psql("SELECT pg_reload_conf()", database="postgres")


async def test_commit_waiting_for_the_standby_is_not_cancelled(postgres: PostgresNode,
                                                               shop_db: str) -> None:
    """A synchronous standby that does not answer: the commit waits. A statement timeout
    that cancelled it would leave it committed on the writer alone (visible there, lost by a
    failover) and a replay would confirm it. Past the request's deadline the caller hears
    'unknown outcome' and the commit goes on waiting, uncancelled, until the standby is back.
    """
    endpoint = Endpoint("writer", shop_db, Settings(database_url=shop_db, db_command_timeout=0.5))
    endpoint.ready.set()
    await endpoint.open()
    order_id = uuid.uuid4()
    await asyncio.to_thread(sync_standby, postgres, "nobody")
    try:
        deadline = asyncio.get_running_loop().time() + 1.5
        with pytest.raises(DatabaseUnavailable) as raised:
            await endpoint.run(lambda conn: place_order(conn, order_id, 2, 1), deadline=deadline,
                               detach=True)
        assert raised.value.may_have_applied
        await asyncio.sleep(1.0)  # twice the statement timeout: a cancel would have landed
        visible = await asyncio.to_thread(
            postgres.psql, f"SELECT count(*) FROM orders WHERE id = '{order_id}'")
        assert visible.strip() == "0", "the commit was cancelled: committed on the writer alone"
    finally:
        await asyncio.to_thread(sync_standby, postgres, "")
    await eventually(lambda: asyncio.to_thread(lambda: postgres.psql(
        f"SELECT status FROM orders WHERE id = '{order_id}'").strip() == "confirmed"),
        "the commit to complete once the standby is no longer awaited", timeout=10)
    await endpoint.close()


# A rotated password ------------------------------------------------------------------------


async def test_password_rotation_costs_no_failed_request(
        postgres: PostgresNode, shop_db: str, db: asyncpg.Connection, tmp_path: Path,
        moto_url: str, aws: ShopResources, aws_env: dict[str, str]) -> None:
    """The role's password changes in PostgreSQL, and only later at its source (the file the
    services read): new connections are refused (28P01) in between. The shop degrades (cache,
    queue) instead of failing, and comes back by itself once the source has the new password.
    """
    role = f"rot_{uuid.uuid4().hex[:8]}"
    hba = postgres.data / "pg_hba.conf"
    original_hba = hba.read_text()
    await asyncio.to_thread(postgres.psql, f"CREATE ROLE {role} LOGIN PASSWORD 'first' "
                            "IN ROLE shop", "postgres")
    hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n{original_hba}")
    await asyncio.to_thread(postgres.psql, "SELECT pg_reload_conf()", "postgres")
    secret = tmp_path / "password"
    secret.write_text("first\n")
    env = {**aws_env, **FAST, "SHOP_DATABASE_PASSWORD_FILE": str(secret),
           "SHOP_DATABASE_URL": f"postgresql://{role}@127.0.0.1:{postgres.port}/shop"}
    try:
        async with serve(orders_app, **env) as orders, serve(catalog_app, **env) as catalog, \
                serve(worker_app, **env):
            stop, log = asyncio.Event(), []
            running = asyncio.create_task(shop_traffic(catalog, orders, stop, log))
            await asyncio.sleep(2)  # steady state; the catalog copy gets written
            await asyncio.to_thread(postgres.psql, f"ALTER ROLE {role} PASSWORD 'second'",
                                    "postgres")
            # Connections are recycled all the time (a proxy, the pool's idle limit): end them.
            await asyncio.to_thread(postgres.psql, "SELECT pg_terminate_backend(pid) FROM "
                                    f"pg_stat_activity WHERE usename = '{role}'", "postgres")
            rotated = time.monotonic()
            await asyncio.sleep(4)
            secret.write_text("second\n")
            updated = time.monotonic()
            await asyncio.sleep(5)
            stop.set()
            await asyncio.wait_for(running, timeout=10)
            accepted = [e["body"]["order_id"] for e in log
                        if e["kind"] == "write" and e["status"] in (201, 202)]

            async def decided() -> bool:
                finals = [(await orders.get(f"/orders/{i}")).json().get("status")
                          for i in accepted]
                return all(s in ("confirmed", "rejected") for s in finals)

            await eventually(decided, "every accepted order to be decided", timeout=30)
    finally:
        hba.write_text(original_hba)
        await asyncio.to_thread(postgres.psql, "SELECT pg_reload_conf()", "postgres")

    statuses = Counter((e["kind"], e["status"]) for e in log)
    assert not [k for k in statuses if k[1] == 0 or k[1] >= 500], statuses
    during = [e for e in log if rotated < e["at"] < updated]
    assert any(e["body"].get("source") in ("cache", "queue") for e in during), \
        "the refused password should have sent requests to the fallbacks"
    settled = [e for e in log if e["at"] > updated + 3]
    assert settled and all(e["body"].get("source") == "database" for e in settled), \
        Counter(e["body"].get("source") for e in settled)
    confirmed = await db.fetchval("SELECT count(*) FROM orders WHERE status = 'confirmed'")
    assert await db.fetchval("SELECT stock FROM products WHERE id = 2") == 150 - confirmed


# AWS hung while the database is out ----------------------------------------------------------


@pytest.fixture
def hung_aws(work_dir: Path) -> Any:
    """moto's server in a process of its own, so that it can be frozen (SIGSTOP): its
    sockets still accept and buffer requests, and it answers them when it thaws."""
    server = MotoServer(free_port(), work_dir / f"moto-{uuid.uuid4().hex[:6]}.log")
    server.start()
    yield server
    os.kill(server.pid, signal.SIGCONT)
    server.stop()


async def test_aws_hung_during_an_outage_every_answer_in_time_and_true(
        hung_aws: MotoServer, shop_db: str, db: asyncpg.Connection) -> None:
    """The database is out and AWS freezes for 8 s under traffic. Every order is answered
    within the request budget, never hangs to the client's timeout; after both come back,
    every order answered 202 is in the database (each applied once), none answered 503;
    those answered "unknown" (their record's write timed out, and may have landed when AWS
    thawed) may be either."""
    resources = await asyncio.to_thread(create_resources, hung_aws.url, "hung")
    env = {**resources.settings(hung_aws.url), **FAST}
    budget = Settings().request_budget_seconds
    answers: list[tuple[float, int, dict[str, Any]]] = []
    async with serve(orders_app, ready=False, timeout=10, **env,
                     SHOP_DATABASE_URL=DOWN) as orders:
        async def one_order() -> None:
            started = time.monotonic()
            try:
                response = await orders.post("/orders", json={"product_id": 2, "quantity": 1})
                answers.append((time.monotonic() - started, response.status_code,
                                response.json()))
            except httpx.HTTPError:
                answers.append((time.monotonic() - started, 0, {}))

        calls = []
        for tick in range(60):  # 6 orders a second for 10 s; AWS frozen from 1 s to 9 s
            if tick == 6:
                os.kill(hung_aws.pid, signal.SIGSTOP)
            if tick == 54:
                os.kill(hung_aws.pid, signal.SIGCONT)
            calls.append(asyncio.create_task(one_order()))
            await asyncio.sleep(1 / 6)
        await asyncio.gather(*calls)
        os.kill(hung_aws.pid, signal.SIGCONT)
    worker_env = {**env, "SHOP_DATABASE_URL": shop_db, "SHOP_WORKER_SWEEP_SECONDS": "0.5",
                  "SHOP_WORKER_SWEEP_AFTER_SECONDS": "0"}
    accepted = {body["order_id"] for _, status, body in answers if status == 202}
    async with serve(worker_app, **worker_env):
        async def all_applied() -> bool:
            in_db = {str(r["id"]) for r in await db.fetch("SELECT id FROM orders")}
            return accepted <= in_db
        await eventually(all_applied, "every 202 to be applied", timeout=60)
        await asyncio.sleep(2)  # any record that landed as AWS thawed is swept too

    slowest = max(seconds for seconds, _, _ in answers)
    # The budget plus scheduling noise on a shared machine, still under the client's 5 s.
    assert slowest < budget + 0.9, f"an answer took {slowest:.1f}s (budget {budget}s)"
    # Customers do not wait on the fault: only the orders in flight before the AWS breakers
    # opened waited for a timeout (the database's fallback_after, then aws_request_timeout);
    # every later one was refused at once, nothing sent.
    settings = Settings()
    waited = [s for s, _, _ in answers if s > 0.3]
    assert len(waited) <= 3 * settings.breaker_fail_max, sorted(waited)
    assert slowest < settings.fallback_after_seconds + settings.aws_request_timeout + 0.5
    statuses = Counter(status for _, status, _ in answers)
    assert set(statuses) <= {202, 503, 504}, statuses
    unknown = {body["order_id"] for _, status, body in answers if status == 504}
    in_db = {str(r["id"]) for r in await db.fetch("SELECT id FROM orders")}
    assert accepted <= in_db <= accepted | unknown, (
        f"applied but neither accepted nor unknown: {len(in_db - accepted - unknown)}, "
        f"accepted but not applied: {len(accepted - in_db)}")
    stock = await db.fetchval("SELECT stock FROM products WHERE id = 2")
    confirmed = await db.fetchval("SELECT count(*) FROM orders WHERE status = 'confirmed'")
    assert stock == 150 - confirmed


async def test_write_still_waiting_for_a_connection_at_its_deadline_never_runs(
        shop_db: str, db: asyncpg.Connection) -> None:
    """The pool's one connection is busy past the deadline: the write never left this process,
    so the answer may say so (not applied), and then it must really never run."""
    endpoint = Endpoint("writer", shop_db, Settings(database_url=shop_db, db_pool_max_size=1,
                                                    db_acquire_timeout=5, db_command_timeout=5))
    endpoint.ready.set()
    await endpoint.open()
    order_id = uuid.uuid4()
    busy = asyncio.ensure_future(endpoint.run(lambda conn: conn.execute("SELECT pg_sleep(1.5)")))
    await asyncio.sleep(0.2)
    try:
        deadline = asyncio.get_running_loop().time() + 0.5
        with pytest.raises(DatabaseUnavailable) as raised:
            await endpoint.run(lambda conn: place_order(conn, order_id, 2, 1), deadline=deadline,
                               detach=True)
        assert not raised.value.may_have_applied
        await busy
        await asyncio.sleep(0.5)
        assert await db.fetchval("SELECT count(*) FROM orders WHERE id = $1", order_id) == 0
    finally:
        await endpoint.close()


async def test_a_locked_hot_row_never_starves_the_pool(shop_db: str,
                                                       db: asyncpg.Connection) -> None:
    """A session sits on the hot product's row. Orders on it are answered within their
    deadline ("may have applied": the worker's replay decides), their lock waits end at the
    order function's lock_timeout, rolled back, and fewer than half the pool ever waits:
    orders on other products and the health check still get connections."""
    endpoint = Endpoint("writer", shop_db, Settings(database_url=shop_db, db_pool_max_size=4))
    endpoint.ready.set()
    await endpoint.open()
    locker = await asyncpg.connect(shop_db)
    held = locker.transaction()
    await held.start()
    await locker.execute("SELECT * FROM products WHERE id = 1 FOR UPDATE")
    loop = asyncio.get_running_loop()
    locked_orders = [uuid.uuid4() for _ in range(5)]
    try:
        for order_id in locked_orders:
            with pytest.raises(DatabaseUnavailable):
                await endpoint.run(lambda conn, o=order_id: place_order(conn, o, 1, 1),
                                   deadline=loop.time() + 0.5, detach=True)
        assert endpoint.detached <= endpoint.max_detached == 2
        # Half the pool is waiting: another write goes to its fallback at once, nothing sent;
        # reads and the health check still get connections.
        with pytest.raises(DatabaseUnavailable) as refused:
            await endpoint.run(lambda conn: place_order(conn, uuid.uuid4(), 2, 1),
                               deadline=loop.time() + 2.0, detach=True)
        assert not refused.value.may_have_applied
        assert await endpoint.ping() >= 0
        await eventually(lambda: asyncio.sleep(0, endpoint.detached == 0),
                         "the detached writes to end at their lock timeout", timeout=10)
        other = await endpoint.run(lambda conn: place_order(conn, uuid.uuid4(), 2, 1),
                                   deadline=loop.time() + 2.0, detach=True)
        assert other.status == "confirmed"
        waiting = await db.fetchval("SELECT count(*) FROM pg_stat_activity"
                                    " WHERE wait_event_type = 'Lock'")
        assert waiting == 0
    finally:
        await held.rollback()
        await locker.close()
        await endpoint.close()
    assert await db.fetchval("SELECT count(*) FROM orders WHERE id = ANY($1)", locked_orders) == 0


async def test_a_record_is_written_once_and_its_key_stays_bound(
        aws: ShopResources, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The order table, the store of record: the same order accepted twice is one record
    (the repeat finds it, pending or decided, and writes nothing); its key refuses another
    body, and nothing of that one is written; nothing is ever withdrawn."""
    for name, value in aws_env.items():
        monkeypatch.setenv(name, value)
    loop = asyncio.get_running_loop()
    order = OrderRequest.new(2, 1, "cart-10")
    async with AsyncExitStack() as stack:
        (dynamodb,) = await open_clients(stack, Settings(), "dynamodb", attempts=1)
        records = OrderRecords(dynamodb, aws.status_table)
        first, created = await records.accept(order, loop.time() + 4)
        again, created_again = await records.accept(order, loop.time() + 4)
        with pytest.raises(IdempotencyKeyReused):
            await records.accept(OrderRequest.new(3, 5, "cart-10"), loop.time() + 4)
        kept = await records.get(order.order_id)
        other = await records.get(OrderRequest.new(3, 5, "cart-10").order_id)
    assert created and not created_again
    assert first.status == again.status == "pending" and again.request == order
    assert kept is not None and kept.request == order and kept.status == "pending"
    assert other is None


@pytest.mark.parametrize("refusal", [
    asyncpg.InvalidPasswordError("password authentication failed for user \"shop_orders\""),
    asyncpg.ProtocolViolationError("password authentication failed"),  # PgBouncer, md5
    asyncpg.ProtocolViolationError("SASL authentication failed"),  # PgBouncer 1.18, SCRAM
])
def test_every_form_of_a_refused_password_reads_the_source_again(refusal: Exception) -> None:
    """PostgreSQL says 28P01; PgBouncer says 08P01 in its own words. Each must make the
    next connection read the password again, and count as the database being unavailable."""
    assert is_auth_error(refusal) and is_connection_error(refusal)
    assert not is_auth_error(asyncpg.ProtocolViolationError("unsupported startup parameter"))
