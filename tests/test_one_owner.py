"""One owner for every accepted order: each finding of the review, staged against the real
parts (PostgreSQL, moto's server over HTTP, servers that hang or refuse) and on a fleet of
orders replicas where it takes two. Every answer is held against what the database and the
order table finally hold: 201 is confirmed; 202 reaches a final state and says so on every
replica, for good; 409 / 4xx / 503 mean nothing happened; "unknown" (504) may be anything,
and a retry with the same Idempotency-Key resolves it."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI

from chaos_lab.local.aws import ShopResources, client
from chaos_lab.local.postgres import PostgresNode
from order_worker.app import app as worker_app
from orders import main as orders_main
from orders import routes as orders_routes
from orders.main import app as orders_app
from shop.web import create_app
from support import BlackHole, SwallowingProxy, cure, eventually, refusing_url, serve

DOWN = "postgresql://shop@127.0.0.1:1/shop"  # nothing listens there
FAST = {"SHOP_BREAKER_PROBE_SECONDS": "0.5", "SHOP_MIGRATE_MAX_BACKOFF_SECONDS": "0.5",
        "SHOP_WORKER_WAIT_SECONDS": "1", "SHOP_WORKER_SWEEP_SECONDS": "0.5",
        "SHOP_WORKER_SWEEP_AFTER_SECONDS": "0"}
ORDER = {"product_id": 2, "quantity": 1}


def replica() -> FastAPI:
    """Another orders process: its own app, state and pools, the same code."""
    return create_app("orders", orders_main.lifespan, [orders_routes.router])


def key(name: str) -> dict[str, str]:
    return {"Idempotency-Key": name}


async def final_status(db: asyncpg.Connection, order_id: str) -> str | None:
    return await db.fetchval("SELECT status FROM orders WHERE id = $1", uuid.UUID(order_id))


async def decided(db: asyncpg.Connection, order_ids: list[str]) -> bool:
    statuses = [await final_status(db, i) for i in order_ids]
    return all(s in ("confirmed", "rejected", "failed") for s in statuses)


# 1. A 202 held only in memory ---------------------------------------------------------------


async def test_an_accepted_order_outlives_its_process_and_a_queue_that_hangs(
        shop_db: str, db: asyncpg.Connection, aws_env: dict[str, str]) -> None:
    """The database is out and SQS takes every message without ever answering. Whatever the
    orders process answered 202 must reach a final state after that process is gone, with
    SQS never having taken a single message: the order's record is what was accepted."""
    env = {**aws_env, **FAST}
    async with BlackHole() as hung_sqs, serve(orders_app, ready=False, **env,
                                              SHOP_DATABASE_URL=DOWN,
                                              AWS_ENDPOINT_URL_SQS=hung_sqs.url) as orders:
        answers = [await orders.post("/orders", json=ORDER, headers=key(f"memory-{i}"))
                   for i in range(5)]
    accepted = [a.json()["order_id"] for a in answers if a.status_code == 202]
    assert len(accepted) == 5, [(a.status_code, a.text) for a in answers]
    async with serve(worker_app, **env, SHOP_DATABASE_URL=shop_db):
        await eventually(lambda: decided(db, accepted), "every 202 to be decided", timeout=30)
    assert await db.fetchval("SELECT stock FROM products WHERE id = 2") == 145


# 2. A retry of an accepted keyed order gets 503 --------------------------------------------


async def test_a_repeat_of_an_accepted_order_is_never_503(
        shop_db: str, db: asyncpg.Connection, aws_env: dict[str, str]) -> None:
    """Same key and body, retried on other replicas: one whose queue refuses every message,
    one that reaches no AWS at all, and a key whose order was confirmed (201) before the
    outage. Each repeat gets the order's state (202 / 201) or "unknown", never "nothing
    happened" for an order that was accepted."""
    env = {**aws_env, **FAST}
    async with serve(orders_app, **env, SHOP_DATABASE_URL=shop_db) as up:
        direct = await up.post("/orders", json=ORDER, headers=key("repeat-direct"))
    assert direct.status_code == 201
    async with serve(orders_app, ready=False, **env, SHOP_DATABASE_URL=DOWN) as first:
        accepted = await first.post("/orders", json=ORDER, headers=key("repeat-queued"))
    assert accepted.status_code == 202, accepted.text
    async with serve(replica(), ready=False, **env, SHOP_DATABASE_URL=DOWN,
                     AWS_ENDPOINT_URL_SQS=refusing_url()) as other:
        repeats = [await other.post("/orders", json=ORDER, headers=key("repeat-queued"))
                   for _ in range(5)]  # enough for the queue's breaker to open as well
        after_201 = await other.post("/orders", json=ORDER, headers=key("repeat-direct"))
    async with serve(replica(), ready=False, **{**env, "AWS_ENDPOINT_URL": refusing_url()},
                     SHOP_DATABASE_URL=DOWN) as blind:
        blind_repeat = await blind.post("/orders", json=ORDER, headers=key("repeat-queued"))
    for answer, order in [*((r, accepted) for r in repeats), (after_201, direct),
                          (blind_repeat, accepted)]:
        assert answer.status_code != 503, answer.text
        assert answer.json()["order_id"] == order.json()["order_id"], answer.text
    assert {r.status_code for r in repeats} == {202}
    assert after_201.status_code in (201, 202)
    assert blind_repeat.status_code == 504 and blind_repeat.json()["status"] == "unknown"
    async with serve(worker_app, **env, SHOP_DATABASE_URL=shop_db):
        await eventually(lambda: decided(db, [accepted.json()["order_id"]]), "the 202",
                         timeout=30)
    assert await db.fetchval("SELECT count(*) FROM orders WHERE status = 'confirmed'") == 2
    assert await db.fetchval("SELECT stock FROM products WHERE id = 2") == 148


# 3. Without a fallback an unknown outcome was 503, then committed ---------------------------


def sync_standby(node: PostgresNode, names: str) -> None:
    node.psql(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'", database="postgres")
    node.psql("SELECT pg_reload_conf()", database="postgres")


async def test_without_a_fallback_an_unknown_outcome_says_so(
        postgres: PostgresNode, shop_db: str, db: asyncpg.Connection) -> None:
    """No queue: the commit waits (for a standby that does not answer) past the request's
    deadline, then lands. The answer cannot have been "nothing will happen": it is "unknown",
    with the order id, and the retry with the same key gets the truth (201)."""
    async with serve(orders_app, SHOP_DATABASE_URL=shop_db, SHOP_ENABLE_DEGRADATION="false",
                     SHOP_REQUEST_BUDGET_SECONDS="1.5") as orders:
        await asyncio.to_thread(sync_standby, postgres, "nobody")
        try:
            first = await orders.post("/orders", json=ORDER, headers=key("no-fallback"))
        finally:
            await asyncio.to_thread(sync_standby, postgres, "")
        retry = await eventually(lambda: _placed(orders, "no-fallback"), "the retry's 201",
                                 timeout=10)
    assert first.status_code == 504, first.text
    assert first.json()["status"] == "unknown"
    assert first.json()["order_id"] == retry.json()["order_id"]
    assert await final_status(db, first.json()["order_id"]) == "confirmed"
    assert await db.fetchval("SELECT stock FROM products WHERE id = 2") == 149


async def _placed(orders: httpx.AsyncClient, name: str) -> httpx.Response | None:
    answer = await orders.post("/orders", json=ORDER, headers=key(name))
    return answer if answer.status_code == 201 else None


# 4. failed is not final --------------------------------------------------------------------


async def test_a_failed_order_stays_failed(
        shop_db: str, db: asyncpg.Connection, moto_url: str, aws: ShopResources,
        aws_env: dict[str, str], poisoned_product: int) -> None:
    """The worker gives up on an order (an error that is not an outage, attempt after
    attempt): failed. The cause is then fixed and the customer repeats the order: it must
    stay failed, stock untouched, on every replica; a decision is never rewritten."""
    await asyncio.to_thread(lambda: client("sqs", moto_url).set_queue_attributes(
        QueueUrl=aws.queue_url, Attributes={"RedrivePolicy": json.dumps({
            "deadLetterTargetArn": _arn(moto_url, aws.dlq_url), "maxReceiveCount": "2"})}))
    env = {**aws_env, **FAST, "SHOP_WORKER_MAX_ATTEMPTS": "2",
           "SHOP_WORKER_RETRY_SECONDS": "0.2"}
    order = {"product_id": poisoned_product, "quantity": 1}
    async with serve(orders_app, ready=False, **env, SHOP_DATABASE_URL=DOWN) as orders:
        accepted = await orders.post("/orders", json=order, headers=key("poisoned"))
    assert accepted.status_code == 202, accepted.text
    order_id = accepted.json()["order_id"]
    async with serve(worker_app, **env, SHOP_DATABASE_URL=shop_db), \
            serve(orders_app, **env, SHOP_DATABASE_URL=shop_db) as orders:
        await eventually(lambda: _status_is(orders, order_id, "failed"), "failed",
                         timeout=30)
        await cure(db)
        repeat = await orders.post("/orders", json=order, headers=key("poisoned"))
        await asyncio.sleep(2)  # the worker had every chance to apply a copy
        after = await orders.get(f"/orders/{order_id}")
    assert repeat.status_code != 201, repeat.text
    assert repeat.status_code == 409 and "failed" in repeat.json()["error"], repeat.text
    assert after.json()["status"] == "failed", after.text
    assert await final_status(db, order_id) == "failed"
    assert await db.fetchval("SELECT stock FROM products WHERE id = $1", poisoned_product) == 50


def _arn(moto_url: str, queue_url: str) -> str:
    return str(client("sqs", moto_url).get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])


async def _status_is(orders: httpx.AsyncClient, order_id: str, status: str) -> bool:
    answer = await orders.get(f"/orders/{order_id}")
    return answer.status_code == 200 and answer.json()["status"] == status


# 5. 404 for accepted orders ------------------------------------------------------------------


async def test_every_replica_finds_every_accepted_order(
        shop_db: str, db: asyncpg.Connection, aws_env: dict[str, str]) -> None:
    """Replica A has lost its database and its AWS calls hang; replica B is fine. Whatever A
    answered 202, B must find (pending or decided), never 404: the customer would order
    again. A's queue alone hanging: B finds the order pending."""
    env = {**aws_env, **FAST}
    async with BlackHole() as hung:
        async with serve(orders_app, ready=False, **{**env, "AWS_ENDPOINT_URL": hung.url},
                         SHOP_DATABASE_URL=DOWN) as a:
            blind = [await a.post("/orders", json=ORDER) for _ in range(4)]
        async with serve(replica(), ready=False, **env, SHOP_DATABASE_URL=DOWN,
                         AWS_ENDPOINT_URL_SQS=hung.url) as a:
            queued = await a.post("/orders", json=ORDER)
    async with serve(replica(), **env, SHOP_DATABASE_URL=shop_db) as b:
        for answer in [*blind, queued]:
            if answer.status_code == 202:
                found = await b.get(f"/orders/{answer.json()['order_id']}")
                assert found.status_code == 200, (answer.text, found.text)
        assert queued.status_code == 202, queued.text
        pending = await b.get(f"/orders/{queued.json()['order_id']}")
    assert pending.json()["status"] == "pending"
    assert {a.status_code for a in blind} <= {202, 503, 504}


# 6. Same key, two replicas at once ---------------------------------------------------------


async def test_same_key_on_two_replicas_at_once_is_one_order_and_no_503(
        shop_db: str, db: asyncpg.Connection, aws_env: dict[str, str]) -> None:
    """Two replicas take the same keyed orders at the same moment while the database is out;
    B's queue refuses every message. Both answer the same order, accepted (neither says
    nothing happened), and the key stays bound: another body is refused."""
    env = {**aws_env, **FAST}
    async with serve(orders_app, ready=False, **env, SHOP_DATABASE_URL=DOWN) as a, \
            serve(replica(), ready=False, **env, SHOP_DATABASE_URL=DOWN,
                  AWS_ENDPOINT_URL_SQS=refusing_url()) as b:
        pairs = [await asyncio.gather(a.post("/orders", json=ORDER, headers=key(f"twin-{i}")),
                                      b.post("/orders", json=ORDER, headers=key(f"twin-{i}")))
                 for i in range(8)]
        other_body = await a.post("/orders", json={"product_id": 2, "quantity": 3},
                                  headers=key("twin-0"))
    for left, right in pairs:
        assert 503 not in (left.status_code, right.status_code), (left.text, right.text)
        assert left.json()["order_id"] == right.json()["order_id"]
        assert {left.status_code, right.status_code} <= {202, 504}
        assert 202 in (left.status_code, right.status_code)
    assert other_body.status_code == 422, other_body.text
    accepted = [left.json()["order_id"] for left, _ in pairs]
    async with serve(worker_app, **env, SHOP_DATABASE_URL=shop_db):
        await eventually(lambda: decided(db, accepted), "every pair's order", timeout=30)
    assert await db.fetchval("SELECT stock FROM products WHERE id = 2") == 150 - len(pairs)


# 7. Keys scoped to their client --------------------------------------------------------------


async def test_two_clients_choosing_the_same_key_never_share_an_order(
        shop_db: str, db: asyncpg.Connection) -> None:
    """Keys are scoped by the client's credential: two clients sending the same key and body
    place two orders; each client's repeat finds its own."""
    ann = {"Authorization": "Bearer ann-secret-token", **key("cart-1")}
    bob = {"Authorization": "Bearer bob-secret-token", **key("cart-1")}
    async with serve(orders_app, SHOP_DATABASE_URL=shop_db) as orders:
        first = await orders.post("/orders", json=ORDER, headers=ann)
        second = await orders.post("/orders", json=ORDER, headers=bob)
        again = await orders.post("/orders", json=ORDER, headers=ann)
    assert first.status_code == second.status_code == again.status_code == 201
    assert first.json()["order_id"] != second.json()["order_id"]
    assert again.json()["order_id"] == first.json()["order_id"]
    assert await db.fetchval("SELECT stock FROM products WHERE id = 2") == 148


async def test_a_key_reused_across_the_two_stores_is_decided_truthfully(
        shop_db: str, db: asyncpg.Connection, aws_env: dict[str, str]) -> None:
    """K with body A accepted while the database is out, then K with body B placed directly
    before the worker applied A. The database's unique key decides: B stands (201), A ends
    rejected with the reason under its own 202's id; never both, stock taken once."""
    env = {**aws_env, **FAST}
    async with serve(orders_app, ready=False, **env, SHOP_DATABASE_URL=DOWN) as down:
        queued = await down.post("/orders", json=ORDER, headers=key("two-stores"))
    async with serve(orders_app, **env, SHOP_DATABASE_URL=shop_db) as up:
        direct = await up.post("/orders", json={"product_id": 2, "quantity": 2},
                               headers=key("two-stores"))
        async with serve(worker_app, **env, SHOP_DATABASE_URL=shop_db):
            await eventually(lambda: _status_is(up, queued.json()["order_id"], "rejected"),
                             "the queued body to be refused", timeout=30)
        refused = await up.get(f"/orders/{queued.json()['order_id']}")
    assert queued.status_code == 202 and direct.status_code == 201
    assert refused.json()["reason"] == "Idempotency-Key already used for a different request"
    assert await db.fetchval("SELECT stock FROM products WHERE id = 2") == 148


# 8. A black-holed connection pins the process -------------------------------------------------


async def test_a_black_holed_connection_cannot_pin_the_process(
        postgres: PostgresNode, shop_db: str, db: asyncpg.Connection) -> None:
    """Two writes' connections are black-holed mid-statement (the flow dropped, the sockets
    left open). Those writes are answered "unknown" at their deadline; the process says in
    /health/deep that writes are stuck; past the detached bound their connections are
    closed, so the process takes orders again. Pooled connections keep TCP alive."""
    async with SwallowingProxy(("127.0.0.1", postgres.port), b"place_order") as proxy:
        via = shop_db.replace(f":{postgres.port}/", f":{proxy.port}/")
        async with serve(orders_app, SHOP_DATABASE_URL=via, SHOP_ENABLE_DEGRADATION="false",
                         SHOP_DB_POOL_MAX_SIZE="4", SHOP_REQUEST_BUDGET_SECONDS="1",
                         SHOP_DB_DETACHED_WRITE_SECONDS="3") as orders:
            warm = await asyncio.gather(*(orders.post("/orders", json={"product_id": p,
                                                                     "quantity": 1})
                                          for p in (1, 4, 6, 7)))
            assert {w.status_code for w in warm} == {201}
            proxy.arm(2)
            stuck = await asyncio.gather(
                orders.post("/orders", json={"product_id": 8, "quantity": 1},
                            headers=key("stuck-8")),
                orders.post("/orders", json={"product_id": 9, "quantity": 1},
                            headers=key("stuck-9")))
            deep = await orders.get("/health/deep")
            keepalive = await _keepalive(orders_app)
            later = await eventually(lambda: _created(orders, 10), "orders taken again",
                                     timeout=15)
            healthy = await orders.get("/health/deep")
    assert proxy.swallowed == 2
    assert {s.status_code for s in stuck} == {504}, [s.text for s in stuck]
    assert deep.status_code == 503 and deep.json()["stuck_writes"] == 2, deep.text
    assert keepalive
    assert later.status_code == 201
    assert healthy.status_code == 200 and healthy.json()["stuck_writes"] == 0


async def _created(orders: httpx.AsyncClient, product_id: int) -> httpx.Response | None:
    answer = await orders.post("/orders", json={"product_id": product_id, "quantity": 1})
    return answer if answer.status_code == 201 else None


async def _keepalive(app: FastAPI) -> bool:
    """SO_KEEPALIVE and TCP_USER_TIMEOUT on a pooled connection of the writer endpoint."""
    pool: Any = app.state.endpoint._pool
    async with pool.acquire() as conn:
        sock = conn._con._transport.get_extra_info("socket")
        return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)) and \
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) > 0
