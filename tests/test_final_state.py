"""A final state for every order, against real PostgreSQL and moto's server: an order whose
message reaches the dead-letter queue is ``failed`` (with a reason) through the orders API,
``redrive`` brings it back and ends, and no database error stops the worker."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY

from chaos_lab.local.aws import MAX_RECEIVES, ShopResources, client
from chaos_lab.local.postgres import PostgresNode
from order_worker.app import app as worker_app
from orders.main import app as orders_app
from shop.orders import place_order
from support import eventually, serve

FAST = {"SHOP_BREAKER_PROBE_SECONDS": "0.5", "SHOP_MIGRATE_MAX_BACKOFF_SECONDS": "0.5",
        "SHOP_WORKER_WAIT_SECONDS": "1"}
POISONED = 3  # the product whose every order the trigger below refuses


@pytest.fixture
async def poisoned_product(db: asyncpg.Connection) -> AsyncIterator[int]:
    """A trigger that RAISEs on every stock update of one product: an error that is not the
    database being out, and that no retry cures until someone drops it."""
    await db.execute("""
        CREATE FUNCTION final_state_poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'product % refused by a test trigger', NEW.id; END $$""")
    await db.execute(f"""
        CREATE TRIGGER final_state_poison BEFORE UPDATE ON products FOR EACH ROW
        WHEN (NEW.id = {POISONED}) EXECUTE FUNCTION final_state_poison()""")
    yield POISONED
    await cure(db)


async def cure(db: asyncpg.Connection) -> None:
    await db.execute("DROP TRIGGER IF EXISTS final_state_poison ON products")
    await db.execute("DROP FUNCTION IF EXISTS final_state_poison()")


def body(order_id: str, product_id: int, quantity: int = 1) -> str:
    return json.dumps({"order_id": order_id, "product_id": product_id, "quantity": quantity})


def attribute(value: str) -> dict[str, Any]:
    return {"origin": {"DataType": "String", "StringValue": value}}


def put_status(moto_url: str, aws: ShopResources, order_id: str, status: str,
               product_id: int = 2) -> None:
    """The status the orders API writes beside a queued order (or the worker's decision)."""
    client("dynamodb", moto_url).put_item(TableName=aws.status_table, Item={
        "order_id": {"S": order_id}, "product_id": {"N": str(product_id)},
        "quantity": {"N": "1"}, "status": {"S": status}, "reason": {"S": ""},
        "updated_at": {"N": str(time.time())}})


def table_status(moto_url: str, aws: ShopResources, order_id: str) -> str | None:
    item = client("dynamodb", moto_url).get_item(
        TableName=aws.status_table, Key={"order_id": {"S": order_id}},
        ConsistentRead=True).get("Item")
    return item["status"]["S"] if item else None


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


async def test_order_still_failing_on_its_tenth_receive_is_failed(
        shop_db: str, db: asyncpg.Connection, poisoned_product: int, moto_url: str,
        aws: ShopResources, aws_env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    env = {**aws_env, **FAST, "SHOP_DATABASE_URL": shop_db}
    order_id = str(uuid.uuid4())
    sqs = client("sqs", moto_url)
    sqs.send_message(QueueUrl=aws.queue_url, MessageBody=body(order_id, poisoned_product),
                     MessageAttributes=attribute("customer-42"))
    put_status(moto_url, aws, order_id, "pending", poisoned_product)
    # Nine receives here (a worker would spend about 13 minutes of backoff on them): the
    # worker's own receive is the last one the redrive policy allows.
    for _ in range(MAX_RECEIVES - 1):
        assert sqs.receive_message(QueueUrl=aws.queue_url, VisibilityTimeout=0,
                                   WaitTimeSeconds=1)["Messages"]
    before = counted("shop_orders_failed_total", reason="receives_exhausted")
    with caplog.at_level(logging.INFO, logger="order_worker"):
        async with serve(worker_app, **env), serve(orders_app, **env) as orders:
            answer = await eventually(lambda: status_is(orders, order_id, "failed"),
                                      "the order to be failed", timeout=30)

    assert answer["reason"].startswith("not applied after 10 receives"), answer
    assert counted("shop_orders_failed_total", reason="receives_exhausted") - before == 1
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("order failed:")]
    assert lines == [f"order failed: {order_id}: {answer['reason']}"]
    (moved,) = dead_letters(moto_url, aws)  # moved by the worker, the customer's data kept
    assert moved["Body"] == body(order_id, poisoned_product)
    assert moved["MessageAttributes"]["origin"]["StringValue"] == "customer-42"
    assert moved["MessageAttributes"]["dead_letter_reason"]["StringValue"] == answer["reason"]
    assert await db.fetchval("SELECT count(*) FROM orders") == 0
    assert await db.fetchval("SELECT stock FROM products WHERE id = $1", poisoned_product) == 50


async def test_dlq_watcher_fails_what_the_redrive_policy_moved(
        shop_db: str, db: asyncpg.Connection, moto_url: str, aws: ShopResources,
        aws_env: dict[str, str]) -> None:
    """Messages put straight into the DLQ, as the redrive policy does behind the worker's
    back: the pending order becomes failed; a decided one (in the status table, or only in
    the database) keeps its decision."""
    env = {**aws_env, **FAST, "SHOP_DATABASE_URL": shop_db}
    lost, decided, committed = (str(uuid.uuid4()) for _ in range(3))
    put_status(moto_url, aws, lost, "pending")
    put_status(moto_url, aws, decided, "confirmed")
    put_status(moto_url, aws, committed, "pending", 4)
    await place_order(db, uuid.UUID(committed), 4, 1)  # its acknowledgement was lost
    sqs = client("sqs", moto_url)
    for order_id, product_id in ((lost, 2), (decided, 2), (committed, 4)):
        sqs.send_message(QueueUrl=aws.dlq_url, MessageBody=body(order_id, product_id))
    before = counted("shop_orders_failed_total", reason="dead_lettered")

    async with serve(worker_app, **env), serve(orders_app, **env) as orders:
        answer = await eventually(lambda: status_is(orders, lost, "failed"),
                                  "the watcher to fail the order", timeout=30)
        await eventually(lambda: asyncio.to_thread(
            lambda: table_status(moto_url, aws, committed) == "confirmed"),
            "the committed order's decision to be recorded", timeout=30)
        kept = await status_is(orders, decided, "confirmed")

    assert answer["reason"] == f"dead-lettered after {MAX_RECEIVES} receives"
    assert answer["product_id"] == 2 and answer["quantity"] == 1
    assert kept is not None, "a decided order is never failed"
    assert counted("shop_orders_failed_total", reason="dead_lettered") - before == 1
    queued = client("sqs", moto_url).get_queue_attributes(
        QueueUrl=aws.dlq_url, AttributeNames=["All"])["Attributes"]
    in_dlq = int(queued["ApproximateNumberOfMessages"]) + int(
        queued["ApproximateNumberOfMessagesNotVisible"])
    assert in_dlq == 3, "the watcher never deletes: the DLQ waits for a human"


async def test_redrive_ends_with_a_poison_message_and_reopens_orders(
        shop_db: str, db: asyncpg.Connection, poisoned_product: int, moto_url: str,
        aws: ShopResources, aws_env: dict[str, str]) -> None:
    """With a worker running, redrive moves what the DLQ held when it started: the poison
    message, dead-lettered again at once, is not moved a second time (the command ends);
    attributes travel with the messages; orders are pending again until decided."""
    env = {**aws_env, **FAST, "SHOP_DATABASE_URL": shop_db}
    poison, stuck = str(uuid.uuid4()), str(uuid.uuid4())
    sqs = client("sqs", moto_url)
    sqs.send_message(QueueUrl=aws.dlq_url, MessageBody=body(poison, 0),  # never valid
                     MessageAttributes=attribute("poison"))
    sqs.send_message(QueueUrl=aws.dlq_url, MessageBody=body(stuck, poisoned_product),
                     MessageAttributes=attribute("stuck"))
    for order_id in (poison, stuck):
        put_status(moto_url, aws, order_id, "failed")  # as the worker left them

    async with serve(worker_app, **env), serve(orders_app, **env) as orders:
        redrive = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "order_worker", "redrive"],
            env=aws_env, capture_output=True, text=True, timeout=60)
        assert redrive.returncode == 0, redrive.stderr
        assert "moved 2 message(s)" in redrive.stdout, redrive.stdout
        assert poison in redrive.stdout and stuck in redrive.stdout

        # Back to pending, and pending it stays while the trigger refuses it.
        assert await status_is(orders, stuck, "pending"), "redrive reopens a failed order"

        def poison_back_in_dlq() -> dict[str, Any] | None:
            for message in dead_letters(moto_url, aws):
                if message["Body"] == body(poison, 0):
                    return message
            return None

        again = await eventually(lambda: asyncio.to_thread(poison_back_in_dlq),
                                 "the poison message to be dead-lettered again", timeout=40)
        assert again["MessageAttributes"]["origin"]["StringValue"] == "poison"
        await eventually(lambda: status_is(orders, poison, "failed"),
                         "the poison order to be failed again", timeout=30)

        await cure(db)
        await eventually(lambda: status_is(orders, stuck, "confirmed"),
                         "the redriven order to be applied once the cause is gone", timeout=40)


async def test_worker_survives_a_database_error_that_is_not_an_outage(
        shop_db: str, db: asyncpg.Connection, poisoned_product: int, moto_url: str,
        aws: ShopResources, aws_env: dict[str, str]) -> None:
    """A trigger refusing one product's orders: that message comes back with a growing delay
    (not the 30 s visibility timeout), every other order is drained."""
    env = {**aws_env, **FAST, "SHOP_DATABASE_URL": shop_db}
    sqs = client("sqs", moto_url)
    good = {str(uuid.uuid4()): product for product in (1, 2, 4)}
    refused = str(uuid.uuid4())
    sqs.send_message(QueueUrl=aws.queue_url, MessageBody=body(refused, poisoned_product))
    for order_id, product_id in good.items():
        sqs.send_message(QueueUrl=aws.queue_url, MessageBody=body(order_id, product_id))
    before = counted("shop_worker_messages_total", outcome="error")

    async def confirmed() -> bool:
        count = await db.fetchval("SELECT count(*) FROM orders WHERE status = 'confirmed'"
                                  " AND id = ANY($1::uuid[])", list(good))
        return bool(count == len(good))

    async with serve(worker_app, **env) as worker:
        await eventually(confirmed, "the other orders to be drained", timeout=30)
        await eventually(
            lambda: value(counted("shop_worker_messages_total", outcome="error") - before >= 3),
            "the refused order to be tried three times, sooner than the visibility timeout",
            timeout=20)
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
