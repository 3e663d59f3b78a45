"""A final state for every accepted order, against real PostgreSQL and moto's server: an order
the worker cannot apply, attempt after attempt, is ``failed`` for good (with a reason) through
the orders API; a wake-up that reaches the dead-letter queue loses nothing; ``redrive`` ends
and never reopens a decision; no database error stops the worker."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY

import order_worker.dead_letters as dead_letters_module
from chaos_lab.local.aws import ShopResources, client
from chaos_lab.local.postgres import PostgresNode
from order_worker.app import app as worker_app
from orders.main import app as orders_app
from shop.orders import OrderRequest, fail_order
from support import eventually, serve

FAST = {"SHOP_BREAKER_PROBE_SECONDS": "0.5", "SHOP_MIGRATE_MAX_BACKOFF_SECONDS": "0.5",
        "SHOP_WORKER_WAIT_SECONDS": "1", "SHOP_WORKER_SWEEP_SECONDS": "0.5",
        "SHOP_WORKER_SWEEP_AFTER_SECONDS": "0", "SHOP_WORKER_RETRY_SECONDS": "0.2"}
DOWN = "postgresql://shop@127.0.0.1:1/shop"  # nothing listens there
def body(order_id: str, product_id: int, quantity: int = 1) -> str:
    return json.dumps({"order_id": order_id, "product_id": product_id, "quantity": quantity})


def attribute(value: str) -> dict[str, Any]:
    return {"origin": {"DataType": "String", "StringValue": value}}


def record_of(moto_url: str, aws: ShopResources, order_id: str) -> dict[str, Any] | None:
    """An order's item in the order table, read consistently."""
    item: dict[str, Any] | None = client("dynamodb", moto_url).get_item(
        TableName=aws.status_table, Key={"order_id": {"S": order_id}},
        ConsistentRead=True).get("Item")
    return item


async def accepted_while_out(env: dict[str, str], product_id: int) -> str:
    """An order taken by the orders service with the database out: its record is pending
    in the order table, its wake-up on the queue. Returns its id."""
    async with serve(orders_app, ready=False, **env, SHOP_DATABASE_URL=DOWN) as orders:
        answer = await orders.post("/orders", json={"product_id": product_id, "quantity": 1})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["order_id"])


def counted(name: str, **labels: str) -> float:
    """A counter of this process's registry (the apps run in-process): deltas, since every
    test of the session adds to it."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def status_is(orders: httpx.AsyncClient, order_id: str,
                    status: str) -> dict[str, Any] | None:
    response = await orders.get(f"/orders/{order_id}")
    if response.status_code == 200 and response.json()["status"] == status:
        answer: dict[str, Any] = response.json()
        return answer
    return None


async def value(result: Any) -> Any:
    """A value already known, as the awaitable ``eventually`` polls."""
    return result


def dead_letters(moto_url: str, aws: ShopResources) -> list[dict[str, Any]]:
    """What the DLQ shows now, left visible (the worker's own watcher reads it too)."""
    return client("sqs", moto_url).receive_message(
        QueueUrl=aws.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0,
        MessageAttributeNames=["All"]).get("Messages", [])


async def test_an_order_failing_attempt_after_attempt_is_failed_for_good(
        shop_db: str, db: asyncpg.Connection, poisoned_product: int, moto_url: str,
        aws: ShopResources, aws_env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    """Every attempt meets an error that is not an outage: counted in the order's record,
    tried again later and later, and after the last one failed for good, in the database,
    with the last error as its reason; logged and counted once; nothing dead-lettered (the
    record was the order all along)."""
    env = {**aws_env, **FAST, "SHOP_WORKER_MAX_ATTEMPTS": "3"}
    order_id = await accepted_while_out(env, poisoned_product)
    before = counted("shop_orders_failed_total", reason="attempts_exhausted")
    with caplog.at_level(logging.INFO, logger="order_worker"):
        async with serve(worker_app, **env, SHOP_DATABASE_URL=shop_db), \
                serve(orders_app, **env, SHOP_DATABASE_URL=shop_db) as orders:
            answer = await eventually(lambda: status_is(orders, order_id, "failed"),
                                      "the order to be failed", timeout=30)
            await asyncio.sleep(1.5)  # more sweeps: nothing changes a decision
            after = await status_is(orders, order_id, "failed")

    assert answer["reason"].startswith("not applied after 3 attempts: RaiseError"), answer
    assert after is not None and answer["source"] == "database"
    assert counted("shop_orders_failed_total", reason="attempts_exhausted") - before == 1
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("order failed:")]
    assert lines == [f"order failed: {order_id}: {answer['reason']}"]
    record = record_of(moto_url, aws, order_id)
    assert record is not None and record["status"]["S"] == "failed"
    assert "undecided" not in record  # out of the sweep's index
    assert dead_letters(moto_url, aws) == []
    assert await db.fetchval("SELECT status FROM orders WHERE id = $1",
                             uuid.UUID(order_id)) == "failed"
    assert await db.fetchval("SELECT stock FROM products WHERE id = $1", poisoned_product) == 50


async def test_a_dead_lettered_wake_up_loses_nothing(
        shop_db: str, db: asyncpg.Connection, moto_url: str, aws: ShopResources,
        aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The redrive policy moves an accepted order's wake-up to the DLQ behind the worker's
    back: the sweep applies the order all the same, and the watcher clears the wake-up from
    the DLQ. What needs a person stays there: a message that cannot be read, a wake-up for an
    order nobody accepted."""
    monkeypatch.setattr(dead_letters_module, "DLQ_WATCH_SECONDS", 0.5)
    env = {**aws_env, **FAST}
    order_id = await accepted_while_out(env, 2)
    sqs = client("sqs", moto_url)
    (wake_up,) = sqs.receive_message(QueueUrl=aws.queue_url, WaitTimeSeconds=2)["Messages"]
    sqs.send_message(QueueUrl=aws.dlq_url, MessageBody=wake_up["Body"])
    sqs.delete_message(QueueUrl=aws.queue_url, ReceiptHandle=wake_up["ReceiptHandle"])
    nobody = json.dumps({"order_id": str(uuid.uuid4())})
    for stray in ("not json at all", nobody):
        sqs.send_message(QueueUrl=aws.dlq_url, MessageBody=stray)

    async with serve(worker_app, **env, SHOP_DATABASE_URL=shop_db), \
            serve(orders_app, **env, SHOP_DATABASE_URL=shop_db) as orders:
        await eventually(lambda: status_is(orders, order_id, "confirmed"),
                         "the sweep to apply the order", timeout=30)
        await eventually(lambda: asyncio.to_thread(
            lambda: sorted(m["Body"] for m in dead_letters(moto_url, aws))
            == sorted(["not json at all", nobody])),
            "the watcher to clear the wake-up and leave the rest", timeout=20)
    assert await db.fetchval("SELECT stock FROM products WHERE id = 2") == 149


async def test_redrive_ends_with_a_poison_message_and_never_reopens_a_decision(
        shop_db: str, db: asyncpg.Connection, moto_url: str, aws: ShopResources,
        aws_env: dict[str, str]) -> None:
    """With a worker running, redrive moves what the DLQ held when it started: the poison
    message, dead-lettered again at once, is not moved a second time (the command ends);
    attributes travel with the messages; a wake-up for a failed order (redriven, or cleared
    from the DLQ by the worker's watcher first) leaves it failed."""
    env = {**aws_env, **FAST, "SHOP_DATABASE_URL": shop_db}
    poison = str(uuid.uuid4())
    failed = OrderRequest(uuid.uuid4(), 2, 1)
    await fail_order(db, failed, "given up by hand")
    client("dynamodb", moto_url).put_item(TableName=aws.status_table, Item={
        "order_id": {"S": str(failed.order_id)}, "product_id": {"N": "2"},
        "quantity": {"N": "1"}, "status": {"S": "failed"}, "reason": {"S": "given up by hand"},
        "accepted_at": {"N": str(time.time())}})
    sqs = client("sqs", moto_url)
    sqs.send_message(QueueUrl=aws.dlq_url, MessageBody=body(poison, 0),  # never valid
                     MessageAttributes=attribute("poison"))
    sqs.send_message(QueueUrl=aws.dlq_url, MessageBody=body(str(failed.order_id), 2),
                     MessageAttributes=attribute("failed"))

    async with serve(worker_app, **env), serve(orders_app, **env) as orders:
        redrive = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "order_worker", "redrive"],
            env=aws_env, capture_output=True, text=True, timeout=60)
        assert redrive.returncode == 0, redrive.stderr
        assert redrive.stdout.startswith(("moved 1 message(s)", "moved 2 message(s)")), \
            redrive.stdout
        assert poison in redrive.stdout

        def poison_back_in_dlq() -> dict[str, Any] | None:
            for message in dead_letters(moto_url, aws):
                if message["Body"] == body(poison, 0):
                    return message
            return None

        again = await eventually(lambda: asyncio.to_thread(poison_back_in_dlq),
                                 "the poison message to be dead-lettered again", timeout=40)
        assert again["MessageAttributes"]["origin"]["StringValue"] == "poison"
        await asyncio.sleep(2)  # the failed order's wake-up was received and settled
        kept = await status_is(orders, str(failed.order_id), "failed")
    assert kept is not None and kept["reason"] == "given up by hand"
    assert await db.fetchval("SELECT stock FROM products WHERE id = 2") == 150


async def test_worker_survives_a_database_error_that_is_not_an_outage(
        shop_db: str, db: asyncpg.Connection, poisoned_product: int, moto_url: str,
        aws: ShopResources, aws_env: dict[str, str]) -> None:
    """A trigger refusing one product's orders: that order is tried again sooner than any
    visibility timeout (its attempts counted in its record), every other order is drained."""
    env = {**aws_env, **FAST, "SHOP_DATABASE_URL": shop_db}
    sqs = client("sqs", moto_url)
    good = {str(uuid.uuid4()): product for product in (1, 2, 4)}
    refused = str(uuid.uuid4())
    sqs.send_message(QueueUrl=aws.queue_url, MessageBody=body(refused, poisoned_product))
    for order_id, product_id in good.items():
        sqs.send_message(QueueUrl=aws.queue_url, MessageBody=body(order_id, product_id))

    async def confirmed() -> bool:
        count = await db.fetchval("SELECT count(*) FROM orders WHERE status = 'confirmed'"
                                  " AND id = ANY($1::uuid[])", list(good))
        return bool(count == len(good))

    def attempts() -> int:
        item = record_of(moto_url, aws, refused) or {}
        return int(item.get("attempts", {}).get("N", 0))

    async with serve(worker_app, **env) as worker:
        await eventually(confirmed, "the other orders to be drained", timeout=30)
        await eventually(lambda: asyncio.to_thread(lambda: attempts() >= 3),
                         "the refused order to be tried three times, sooner than the "
                         "visibility timeout", timeout=20)
        health = await worker.get("/health")
    assert health.status_code == 200
    assert await db.fetchval("SELECT count(*) FROM orders WHERE id = $1",
                             uuid.UUID(refused)) == 0


async def test_poller_survives_an_unexpected_error_in_its_ping(
        shop_db: str, db: asyncpg.Connection, postgres: PostgresNode, moto_url: str,
        aws: ShopResources, aws_env: dict[str, str]) -> None:
    """The writer goes out (its breaker opens), then the worker's probe meets an error that is
    not a connection error ("permission denied for database"): the poller logs it, waits, and
    drains the queue once the database lets it in again."""
    role = f"worker_{uuid.uuid4().hex[:8]}"
    # the superuser, through the node's socket (peer: the only way in as it)
    admin = await asyncpg.connect(host=str(postgres.root), port=postgres.port, user="postgres",
                                  database="shop")
    database = await db.fetchval("SELECT current_database()")
    await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'w0rker'")
    await admin.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {role}")
    await admin.execute(f"GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {role}")
    await admin.execute(f"GRANT EXECUTE ON FUNCTION place_order(uuid, int, int, text) TO {role}")
    env = {**aws_env, **FAST, "SHOP_DATABASE_URL": postgres.dsn(user=role).replace(
               f"{role}@", f"{role}:w0rker@"),
           "SHOP_RETRY_BUDGET_SECONDS": "0.5"}
    orders = {str(uuid.uuid4()): product for product in (1, 2, 4)}
    try:
        async with serve(worker_app, **env):
            endpoint = worker_app.state.endpoint
            # Out: no new connection for the role, and the pooled ones are gone.
            await admin.execute(f"ALTER ROLE {role} CONNECTION LIMIT 0")
            await admin.fetch("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                              " WHERE usename = $1", role)
            sqs = client("sqs", moto_url)
            for order_id, product_id in orders.items():
                sqs.send_message(QueueUrl=aws.queue_url, MessageBody=body(order_id, product_id))
            await eventually(lambda: value(endpoint.breaker.state != "closed"),
                             "the worker's breaker to open", timeout=20)
            # Its probe now meets SQLSTATE 42501, not a connection error.
            await admin.execute(f"REVOKE CONNECT ON DATABASE {database} FROM PUBLIC")
            await admin.execute(f"ALTER ROLE {role} CONNECTION LIMIT -1")
            await asyncio.sleep(3)  # a few probes
            await admin.execute(f"GRANT CONNECT ON DATABASE {database} TO PUBLIC")

            async def drained() -> bool:
                count = await db.fetchval("SELECT count(*) FROM orders WHERE status ="
                                          " 'confirmed' AND id = ANY($1::uuid[])", list(orders))
                return bool(count == len(orders))

            await eventually(drained, "the queue to drain after the database is back",
                             timeout=40)
    finally:
        await admin.execute(f"GRANT CONNECT ON DATABASE {database} TO PUBLIC")
        await admin.fetch("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE usename = $1", role)
        await admin.execute(f"DROP OWNED BY {role}")
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()
