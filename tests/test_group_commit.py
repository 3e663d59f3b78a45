"""Group commit (shop.orders.GroupCommit): a process's concurrent orders for one product go
to the database in one call and one transaction, each keeping its own id, outcome and answer;
and whatever happens to the call, every order's answer is true."""

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from orders.main import app
from shop.breaker import Breaker
from shop.db import Endpoint
from shop.errors import DatabaseUnavailable, Overloaded
from shop.orders import REASON_KEY_REUSED, GroupCommit, Order, OrderRequest, place_orders
from shop.settings import Settings
from support import eventually, serve


@asynccontextmanager
async def writer(url: str, **settings: Any) -> AsyncIterator[Endpoint]:
    endpoint = Endpoint("writer", url, Settings(database_url=url, **settings))
    endpoint.ready.set()
    await endpoint.open()
    try:
        yield endpoint
    finally:
        await endpoint.close()


@asynccontextmanager
async def row_locked(url: str, product_id: int) -> AsyncIterator[None]:
    """Another session holds the product's row: a batch for it waits at the lock, in flight."""
    locker = await asyncpg.connect(url)
    held = locker.transaction()
    await held.start()
    await locker.execute("SELECT 1 FROM products WHERE id = $1 FOR UPDATE", product_id)
    try:
        yield
    finally:
        await held.rollback()
        await locker.close()


async def batch_waiting_at_the_lock(db: asyncpg.Connection) -> int:
    """The backend of the batch call blocked on the row lock (its pid)."""
    async def blocked() -> Any:
        return await db.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND query LIKE '%place_orders(%' AND pid <> pg_backend_pid()")
    return int(await eventually(blocked, "the batch to wait at the row lock", timeout=5))


def order(product_id: int, quantity: int = 1, key: str | None = None) -> OrderRequest:
    return OrderRequest.new(product_id, quantity, key)


def soon(seconds: float) -> float:
    return asyncio.get_running_loop().time() + seconds


async def outcome(placing: Awaitable[tuple[Order, float]]) -> Order | DatabaseUnavailable:
    try:
        return (await placing)[0]
    except DatabaseUnavailable as exc:
        return exc


async def transactions(db: asyncpg.Connection) -> int:
    """Each transaction has its own now(): the orders' distinct creation times."""
    return int(await db.fetchval("SELECT count(DISTINCT created_at) FROM orders"))


async def test_300_concurrent_orders_on_a_stock_of_50(shop_db: str,
                                                      db: asyncpg.Connection) -> None:
    await db.execute("UPDATE products SET stock = 50 WHERE id = 3")
    # the transaction's concurrency is the subject, not admission (tests/test_admission.py)
    async with serve(app, SHOP_DATABASE_URL=shop_db, SHOP_ADMISSION="static") as client:
        answers = await asyncio.gather(*(
            client.post("/orders", json={"product_id": 3, "quantity": 1}) for _ in range(300)))
    codes = [a.status_code for a in answers]
    assert codes.count(201) == 50 and codes.count(409) == 250, codes
    assert len({a.json()["order_id"] for a in answers if a.status_code == 201}) == 50
    assert await db.fetchval("SELECT stock FROM products WHERE id = 3") == 0
    assert await db.fetchval("SELECT count(*) FROM orders WHERE status = 'confirmed'") == 50
    assert await transactions(db) < 300 / 2, "the orders were not grouped"


async def test_stock_is_decremented_in_arrival_order(shop_db: str,
                                                     db: asyncpg.Connection) -> None:
    await db.execute("UPDATE products SET stock = 5 WHERE id = 3")
    placed = await place_orders(db, [order(3, 3), order(3, 3), order(3, 2), order(999, 1)])
    assert [(o.status, o.reason) for o in placed] == [
        ("confirmed", None), ("rejected", "insufficient stock"), ("confirmed", None),
        ("rejected", "unknown product")]
    assert await db.fetchval("SELECT stock FROM products WHERE id = 3") == 0


async def test_each_order_of_a_batch_gets_its_own_answer(shop_db: str,
                                                         db: asyncpg.Connection) -> None:
    await db.execute("UPDATE products SET stock = 2 WHERE id = 3")
    body = {"product_id": 3, "quantity": 1}
    async with serve(app, SHOP_DATABASE_URL=shop_db) as client:
        first = await client.post("/orders", json=body, headers={"Idempotency-Key": "k1"})
        answers = await asyncio.gather(
            client.post("/orders", json=body),
            client.post("/orders", json={"product_id": 3, "quantity": 2}),
            client.post("/orders", json={"product_id": 3, "quantity": 2},
                        headers={"Idempotency-Key": "k1"}),
            client.post("/orders", json=body, headers={"Idempotency-Key": "k1"}),
            client.post("/orders", json={"product_id": 999, "quantity": 1}))
    assert first.status_code == 201
    assert [a.status_code for a in answers] == [201, 409, 422, 201, 404]
    assert answers[3].json()["order_id"] == first.json()["order_id"]  # a replay
    assert await db.fetchval("SELECT stock FROM products WHERE id = 3") == 0


async def test_same_key_twice_in_one_batch_is_a_replay(shop_db: str,
                                                       db: asyncpg.Connection) -> None:
    twice = order(2, 4, key="twice")
    first, second = await place_orders(db, [twice, twice])  # one call: one transaction
    assert first == second and first.status == "confirmed"
    assert first.order_id == twice.order_id
    async with writer(shop_db) as endpoint:  # and again, grouped: a replay of the first
        batches = GroupCommit(endpoint)
        again = await asyncio.gather(batches.place(twice, soon(3)),
                                     batches.place(twice, soon(3)))
    assert [placed for placed, _ in again] == [first, first]
    assert await db.fetchval("SELECT stock FROM products WHERE id = 2") == 146
    assert await db.fetchval("SELECT count(*) FROM orders") == 1


async def test_reused_key_with_another_body_in_one_batch_is_refused(
        shop_db: str, db: asyncpg.Connection) -> None:
    one, other = order(2, 1, key="reused"), order(2, 2, key="reused")
    first, second = await place_orders(db, [one, other])
    assert first.status == "confirmed" and first.order_id == one.order_id
    assert (second.status, second.reason) == ("rejected", REASON_KEY_REUSED)
    assert second.order_id == other.order_id
    async with writer(shop_db) as endpoint:
        batches = GroupCommit(endpoint)
        (again, _), (refused, _) = await asyncio.gather(batches.place(other, soon(3)),
                                                        batches.place(one, soon(3)))
    assert (again.status, again.reason) == ("rejected", REASON_KEY_REUSED)
    assert refused == first
    assert await db.fetchval("SELECT stock FROM products WHERE id = 2") == 149
    assert await db.fetchval("SELECT count(*) FROM orders") == 1


async def test_orders_arriving_while_a_batch_is_in_flight_go_as_the_next_batch(
        shop_db: str, db: asyncpg.Connection) -> None:
    async with writer(shop_db) as endpoint:
        batches = GroupCommit(endpoint)
        async with row_locked(shop_db, 2):
            first = asyncio.ensure_future(batches.place(order(2), soon(5)))
            await batch_waiting_at_the_lock(db)
            later = [asyncio.ensure_future(batches.place(order(2), soon(5))) for _ in range(20)]
            await asyncio.sleep(0.2)
        placed = await asyncio.gather(first, *later)
    assert {p.status for p, _ in placed} == {"confirmed"}
    assert await db.fetchval("SELECT stock FROM products WHERE id = 2") == 150 - 21
    assert await transactions(db) == 2


@pytest.mark.parametrize("retry", [False, True])
async def test_a_batch_whose_connection_is_killed_leaves_true_answers(
        shop_db: str, db: asyncpg.Connection, retry: bool) -> None:
    """The batch's backend is terminated while it waits for the row (sent, not committed).
    Without a retry every order hears the call's error, "may have applied" (the API's 202);
    with one, the same batch goes again and each order is placed once. Nothing is lost and
    nothing is doubled: the stock matches the confirmed orders."""
    orders = [order(2, key=f"killed-{i}") for i in range(10)]
    async with writer(shop_db, retry_budget_seconds=3 if retry else 0) as endpoint:
        batches = GroupCommit(endpoint)
        async with row_locked(shop_db, 2):
            placing = [asyncio.ensure_future(outcome(batches.place(o, soon(5))))
                       for o in orders]
            backend = await batch_waiting_at_the_lock(db)
            await db.execute("SELECT pg_terminate_backend($1)", backend)
            await asyncio.sleep(0.3)
        answers = await asyncio.gather(*placing)
    confirmed = await db.fetchval("SELECT count(*) FROM orders WHERE status = 'confirmed'")
    assert await db.fetchval("SELECT stock FROM products WHERE id = 2") == 150 - confirmed
    if retry:
        assert all(isinstance(a, Order) and a.status == "confirmed" for a in answers), answers
        assert confirmed == len(orders)
    else:
        assert all(isinstance(a, DatabaseUnavailable) and a.may_have_applied
                   for a in answers), answers
        assert confirmed == 0  # killed before its commit: the answers said "may have applied"


async def test_deadline_while_waiting_to_join_a_batch_means_never_sent(
        shop_db: str, db: asyncpg.Connection) -> None:
    """One batch is in flight (waiting for the row); orders behind it wait to join the next.
    The first order's deadline passes in flight: "may have applied", and its batch goes on and
    commits. The second's passes while it waits: "not applied", and it never is, not even with
    the next batch, which a third order joins before the row is free."""
    in_flight, waiting, third = order(2), order(2), order(2)
    async with writer(shop_db) as endpoint:
        batches = GroupCommit(endpoint)
        async with row_locked(shop_db, 2):
            first = asyncio.ensure_future(outcome(batches.place(in_flight, soon(0.5))))
            await batch_waiting_at_the_lock(db)
            later = asyncio.ensure_future(outcome(batches.place(third, soon(5))))
            second = await outcome(batches.place(waiting, soon(0.3)))
            assert isinstance(second, DatabaseUnavailable) and not second.may_have_applied
            first_answer = await first
            assert isinstance(first_answer, DatabaseUnavailable)
            assert first_answer.may_have_applied
        last = await later
        await eventually(lambda: db.fetchval("SELECT status = 'confirmed' FROM orders"
                                             " WHERE id = $1", in_flight.order_id),
                         "the in-flight batch to commit after its caller's deadline", timeout=5)
        await asyncio.sleep(0.3)
    assert isinstance(last, Order) and last.status == "confirmed"
    assert await db.fetchval("SELECT count(*) FROM orders WHERE id = $1", waiting.order_id) == 0
    assert await db.fetchval("SELECT stock FROM products WHERE id = 2") == 148


async def test_a_caller_gone_cancels_neither_the_batch_nor_anything_else(
        shop_db: str, db: asyncpg.Connection) -> None:
    """Two callers' orders in flight and a third waiting; the first and the third go away (the
    client disconnected): the batch commits for the second, the third is never sent."""
    a, b, c = order(2), order(2), order(2)
    async with writer(shop_db) as endpoint:
        batches = GroupCommit(endpoint)
        async with row_locked(shop_db, 2):
            gone = asyncio.ensure_future(batches.place(a, soon(5)))
            stays = asyncio.ensure_future(batches.place(b, soon(5)))
            await batch_waiting_at_the_lock(db)
            never = asyncio.ensure_future(batches.place(c, soon(5)))
            await asyncio.sleep(0.1)
            gone.cancel()
            never.cancel()
            await asyncio.sleep(0.1)
        placed, _ = await stays
    assert placed.status == "confirmed"
    assert gone.cancelled() and never.cancelled()
    statuses = dict(await db.fetch("SELECT id, status FROM orders"))
    assert statuses == {a.order_id: "confirmed", b.order_id: "confirmed"}


# Overload is not an outage ---------------------------------------------------------------


@asynccontextmanager
async def answering(endpoint: Endpoint) -> AsyncIterator[None]:
    """The database keeps answering the process's other calls (a read every 20 ms)."""
    async def reads() -> None:
        while True:
            await endpoint.run(lambda conn: conn.fetchval("SELECT 1"))
            await asyncio.sleep(0.02)

    task = asyncio.create_task(reads())
    await asyncio.sleep(0.1)
    try:
        yield
    finally:
        task.cancel()


async def test_a_timeout_while_the_database_answers_others_does_not_open_the_breaker(
        shop_db: str, db: asyncpg.Connection) -> None:
    """A call stuck at a row lock past its deadline, while other calls are answered: the
    process is slow, the database is not out; the breaker (opening on the first failure
    here) stays closed. The same timeout with nobody answered opens it."""
    async with writer(shop_db, fallback_after_seconds=0.2) as endpoint, \
            row_locked(shop_db, 3):
        endpoint.breaker = Breaker("writer", fail_max=1, probe_seconds=60)

        async def stuck(conn: asyncpg.Connection) -> Any:
            return await conn.fetchval("SELECT stock FROM products WHERE id = 3 FOR UPDATE")

        async with answering(endpoint):
            with pytest.raises(DatabaseUnavailable):
                await endpoint.run(stuck, deadline=soon(0.3), detach=True)
            assert endpoint.breaker.closed
        await asyncio.sleep(0.3)  # nothing answered for longer than fallback_after_seconds
        with pytest.raises(DatabaseUnavailable):
            await endpoint.run(stuck, deadline=soon(0.3), detach=True)
        assert not endpoint.breaker.closed


async def test_under_overload_a_waiting_order_is_shed_and_a_sent_one_is_decided(
        shop_db: str, db: asyncpg.Connection) -> None:
    """Two orders for a product whose row another session holds, while the database answers
    the process's other calls: the first is sent and waits at the lock past its deadline,
    for its outcome (patience), and is confirmed once the lock goes; the second, waiting its
    turn behind it, is shed (Overloaded: nothing sent, nothing done), not handed to a
    fallback. With nothing answered, the first would have been "unavailable, may have
    applied" at its deadline."""
    await db.execute("UPDATE products SET stock = 10 WHERE id = 3")
    async with writer(shop_db, fallback_after_seconds=0.2) as endpoint:
        endpoint.breaker = Breaker("writer", fail_max=3, probe_seconds=60)
        orders = GroupCommit(endpoint)
        async with answering(endpoint):
            async with row_locked(shop_db, 3):
                first = asyncio.create_task(
                    orders.place(order(3), deadline=soon(0.2), patience=soon(3)))
                await batch_waiting_at_the_lock(db)
                second = asyncio.create_task(
                    orders.place(order(3), deadline=soon(0.2), patience=soon(3)))
                with pytest.raises(Overloaded):
                    await second
                await asyncio.sleep(0.3)  # the first is past its deadline, still waiting
                assert not first.done()
            placed, _ = await first
    assert placed.status == "confirmed"
    assert await db.fetchval("SELECT count(*) FROM orders WHERE product_id = 3") == 1
    assert await db.fetchval("SELECT stock FROM products WHERE id = 3") == 9
