"""The orders service's HTTP contract: the order transaction, idempotency, bad input."""

import asyncio
import uuid

import asyncpg
import pytest

from orders.main import app
from support import serve


async def stock(db: asyncpg.Connection, product_id: int) -> int:
    return int(await db.fetchval("SELECT stock FROM products WHERE id = $1", product_id))


async def test_order_confirmed_and_stock_decremented(shop_db: str, db: asyncpg.Connection) -> None:
    async with serve(app, SHOP_DATABASE_URL=shop_db) as client:
        created = await client.post("/orders", json={"product_id": 2, "quantity": 3})
        order_id = created.json()["order_id"]
        fetched = await client.get(f"/orders/{order_id}")
    assert created.status_code == 201
    body = created.json()
    assert body["status"] == "confirmed" and body["product_id"] == 2 and body["quantity"] == 3
    assert uuid.UUID(order_id)
    assert fetched.status_code == 200 and fetched.json()["status"] == "confirmed"
    assert await stock(db, 2) == 147


async def test_insufficient_stock_is_409_and_leaves_stock(shop_db: str,
                                                          db: asyncpg.Connection) -> None:
    await db.execute("UPDATE products SET stock = 2 WHERE id = 3")
    async with serve(app, SHOP_DATABASE_URL=shop_db) as client:
        response = await client.post("/orders", json={"product_id": 3, "quantity": 5})
    assert response.status_code == 409
    assert response.json() == {"error": "insufficient stock"}
    assert await stock(db, 3) == 2


async def test_unknown_product_and_unknown_order(shop_db: str) -> None:
    async with serve(app, SHOP_DATABASE_URL=shop_db) as client:
        product = await client.post("/orders", json={"product_id": 999, "quantity": 1})
        order = await client.get(f"/orders/{uuid.uuid4()}")
        not_uuid = await client.get("/orders/not-a-uuid")
    assert product.status_code == 404 and product.json() == {"error": "product not found"}
    assert order.status_code == 404 and order.json() == {"error": "order not found"}
    assert not_uuid.status_code == 422


@pytest.mark.parametrize(
    "body",
    [
        {"product_id": 2},
        {"quantity": 1},
        {"product_id": "2", "quantity": 1},
        {"product_id": 2, "quantity": "one"},
        {"product_id": 2, "quantity": 0},
        {"product_id": 2, "quantity": -4},
        {"product_id": 2, "quantity": 101},
        {"product_id": 2, "quantity": 1.5},
        {"product_id": 2, "quantity": True},
        {"product_id": 10**30, "quantity": 1},
        {"product_id": -1, "quantity": 1},
        {"product_id": 2, "quantity": 1, "price": 0},
        [],
        "text",
        None,
    ],
)
async def test_malformed_orders_are_422(shop_db: str, db: asyncpg.Connection,
                                        body: object) -> None:
    async with serve(app, SHOP_DATABASE_URL=shop_db) as client:
        response = await client.post("/orders", json=body)
    assert response.status_code == 422, response.text
    assert await db.fetchval("SELECT count(*) FROM orders") == 0


async def test_non_json_and_oversized_bodies(shop_db: str, db: asyncpg.Connection) -> None:
    async with serve(app, SHOP_DATABASE_URL=shop_db) as client:
        not_json = await client.post("/orders", content=b"{product_id: 2",
                                     headers={"content-type": "application/json"})
        huge = await client.post("/orders", content=b"{" + b" " * 100_000 + b"}",
                                 headers={"content-type": "application/json"})
        wrong_method = await client.delete("/orders")
    assert not_json.status_code == 422
    assert huge.status_code == 413 and huge.json() == {"error": "request body too large"}
    assert wrong_method.status_code == 405
    assert await db.fetchval("SELECT count(*) FROM orders") == 0


async def test_no_oversell_under_concurrency(shop_db: str, db: asyncpg.Connection) -> None:
    """300 concurrent orders of 1 on a stock of 50: exactly 50 confirmed, never a 5xx (with the
    static ceiling: an adaptive limit sheds part of a cold burst, tests/test_admission.py)."""
    async with serve(app, SHOP_DATABASE_URL=shop_db, SHOP_ADMISSION="static",
                     timeout=30) as client:
        responses = await asyncio.gather(*(
            client.post("/orders", json={"product_id": 3, "quantity": 1}) for _ in range(300)
        ))
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 50
    assert statuses.count(409) == 250
    assert await stock(db, 3) == 0
    assert await db.fetchval("SELECT count(*) FROM orders WHERE status = 'confirmed'") == 50


async def test_idempotency_key_returns_the_first_answer(shop_db: str,
                                                        db: asyncpg.Connection) -> None:
    headers = {"Idempotency-Key": "checkout-42"}
    async with serve(app, SHOP_DATABASE_URL=shop_db) as client:
        first = await client.post("/orders", json={"product_id": 2, "quantity": 2},
                                  headers=headers)
        again = await client.post("/orders", json={"product_id": 2, "quantity": 2},
                                  headers=headers)
        other = await client.post("/orders", json={"product_id": 2, "quantity": 2},
                                  headers={"Idempotency-Key": "checkout-43"})
    assert first.status_code == again.status_code == 201
    assert first.json()["order_id"] == again.json()["order_id"]
    assert other.json()["order_id"] != first.json()["order_id"]
    assert await stock(db, 2) == 146  # two orders, not three


async def test_database_not_ready_is_503_while_health_answers() -> None:
    async with serve(app, ready=False,
                     SHOP_DATABASE_URL="postgresql://shop@127.0.0.1:1/shop") as client:
        live = await client.get("/health")
        order = await client.post("/orders", json={"product_id": 2, "quantity": 1})
        deep = await client.get("/health/deep")
    assert live.status_code == 200
    assert order.status_code == 503 and order.json() == {"error": "database not ready"}
    assert deep.status_code == 503
    assert deep.json()["status"] == "unhealthy" and deep.json()["database"] == "error"
