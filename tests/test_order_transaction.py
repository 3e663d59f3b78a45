"""shop.orders.place_order and the resilient endpoint around it, on a real database."""

import asyncio
import uuid
from typing import Any

import asyncpg

from shop.db import Endpoint
from shop.orders import place_order
from shop.settings import Settings


async def test_replay_after_a_lost_commit_acknowledgement(shop_db: str,
                                                          db: asyncpg.Connection) -> None:
    """The commit happens, the acknowledgement is lost (a connection error reaches the
    client), the endpoint retries with the same order id: one order, stock decremented once."""
    endpoint = Endpoint("writer", shop_db, Settings(database_url=shop_db, retry_budget_seconds=3))
    endpoint.ready.set()
    await endpoint.open()
    order_id = uuid.uuid4()
    attempts = 0

    async def order_with_lost_ack(conn: asyncpg.Connection) -> Any:
        nonlocal attempts
        attempts += 1
        placed = await place_order(conn, order_id, 2, 5)
        if attempts == 1:
            raise ConnectionResetError("commit acknowledgement lost")
        return placed

    try:
        placed = await endpoint.run(order_with_lost_ack)
    finally:
        await endpoint.close()
    assert attempts == 2
    assert placed.status == "confirmed" and placed.order_id == order_id
    assert await db.fetchval("SELECT stock FROM products WHERE id = 2") == 145
    assert await db.fetchval("SELECT count(*) FROM orders WHERE id = $1", order_id) == 1


async def test_concurrent_attempts_with_one_id_decrement_once(shop_db: str,
                                                              db: asyncpg.Connection) -> None:
    order_id = uuid.uuid4()
    conns = [await asyncpg.connect(shop_db) for _ in range(5)]
    try:
        results = await asyncio.gather(*(place_order(c, order_id, 3, 4) for c in conns))
    finally:
        for c in conns:
            await c.close()
    assert {r.status for r in results} == {"confirmed"}
    assert await db.fetchval("SELECT stock FROM products WHERE id = 3") == 46


async def test_rejections_are_recorded_with_a_reason(shop_db: str,
                                                     db: asyncpg.Connection) -> None:
    no_stock = await place_order(db, uuid.uuid4(), 3, 51)
    unknown = await place_order(db, uuid.uuid4(), 4242, 1)
    assert (no_stock.status, no_stock.reason) == ("rejected", "insufficient stock")
    assert (unknown.status, unknown.reason) == ("rejected", "unknown product")
    assert await db.fetchval("SELECT stock FROM products WHERE id = 3") == 50
