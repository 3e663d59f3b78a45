"""Least privilege in the database: the services run as roles that can do their job and no
more; the schema belongs to its owner and changes only through ``python -m shop.migrate``."""

import asyncio
import json
import subprocess
import sys
import time
import uuid

import asyncpg
import pytest

from catalog.main import app as catalog_app
from chaos_lab.local.aws import client
from chaos_lab.local.postgres import CATALOG_USER, ORDERS_USER, PostgresNode
from orders.main import app as orders_app
from shop.db import migration_files
from shop.orders import place_order
from support import serve


async def test_each_service_runs_as_its_own_role(postgres: PostgresNode, shop_db: str) -> None:
    """The services, with SHOP_MIGRATE=false, under their roles: orders and the catalog do
    their whole job."""
    as_orders = {"SHOP_DATABASE_URL": postgres.dsn(user=ORDERS_USER, with_password=True),
                 "SHOP_MIGRATE": "false"}
    as_catalog = {"SHOP_DATABASE_URL": postgres.dsn(user=CATALOG_USER, with_password=True),
                  "SHOP_MIGRATE": "false"}
    async with serve(orders_app, **as_orders) as orders, \
            serve(catalog_app, **as_catalog) as catalog:
        placed = await orders.post("/orders", json={"product_id": 2, "quantity": 1})
        looked_up = await orders.get(f"/orders/{placed.json()['order_id']}")
        sold_out = await orders.post("/orders", json={"product_id": 3, "quantity": 99})
        product = await catalog.get("/products/2")
    assert placed.status_code == 201 and looked_up.status_code == 200
    assert sold_out.status_code == 409
    assert product.json()["stock"] == 149


@pytest.mark.parametrize(("user", "statement"), [
    (CATALOG_USER, "UPDATE products SET stock = 0"),
    (CATALOG_USER, "INSERT INTO orders (id, product_id, quantity, status)"
                   " VALUES (gen_random_uuid(), 1, 1, 'pending')"),
    (CATALOG_USER, "SELECT count(*) FROM orders"),
    (ORDERS_USER, "DELETE FROM orders"),
    # A decision is written by the order functions alone, and never rewritten (0007).
    (ORDERS_USER, "UPDATE orders SET status = 'confirmed'"),
    (ORDERS_USER, "INSERT INTO orders (id, product_id, quantity, status)"
                  " VALUES (gen_random_uuid(), 1, 1, 'confirmed')"),
    (ORDERS_USER, "UPDATE products SET stock = 0"),
    (ORDERS_USER, "UPDATE products SET price = 0"),
    (ORDERS_USER, "INSERT INTO products (id, name, price, stock) VALUES (99, 'x', 1, 1)"),
    (ORDERS_USER, "DROP TABLE orders"),
    (ORDERS_USER, "CREATE TABLE intruder (id int)"),
])
async def test_roles_cannot_do_more(postgres: PostgresNode, shop_db: str, user: str,
                                    statement: str) -> None:
    conn = await asyncpg.connect(postgres.dsn(user=user, with_password=True))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_orders_role_places_orders(postgres: PostgresNode, shop_db: str,
                                         db: asyncpg.Connection) -> None:
    conn = await asyncpg.connect(postgres.dsn(user=ORDERS_USER, with_password=True))
    try:
        order = await place_order(conn, uuid.uuid4(), 3, 2, "least-privilege")
    finally:
        await conn.close()
    assert order.status == "confirmed"
    assert await db.fetchval("SELECT stock FROM products WHERE id = 3") == 48


async def test_migrate_command_applies_the_schema_and_sets_role_passwords(
        postgres: PostgresNode, moto_url: str, aws_env: dict[str, str]) -> None:
    database = f"m{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(postgres.psql, f"CREATE DATABASE {database} OWNER shop", "postgres")
    secret = client("secretsmanager", moto_url).create_secret(
        Name=f"orders-{database}", SecretString=json.dumps({"username": ORDERS_USER,
                                                             "password": "rotated-by-deploy"}))
    hash_before = await asyncio.to_thread(postgres.psql, "SELECT rolpassword FROM pg_authid "
                                          f"WHERE rolname = '{ORDERS_USER}'", "postgres")
    env = {**aws_env, "SHOP_DATABASE_URL": postgres.dsn(database=database, with_password=True),
           "SHOP_ROLE_SECRETS": json.dumps({ORDERS_USER: secret["ARN"]})}
    # The owner sets the services' passwords: on RDS the master user may (rds_superuser).
    await asyncio.to_thread(postgres.psql, "ALTER ROLE shop CREATEROLE", "postgres")
    try:
        result = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "shop.migrate", "--timeout", "30"],
            env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        tables = await asyncio.to_thread(
            postgres.psql, "SELECT string_agg(version, ',' ORDER BY version) "
            "FROM schema_migrations", database)
        assert tables.strip() == ",".join(version for version, _ in migration_files())
        hash_after = await asyncio.to_thread(postgres.psql, "SELECT rolpassword FROM pg_authid "
                                             f"WHERE rolname = '{ORDERS_USER}'", "postgres")
        assert hash_after != hash_before and hash_after.startswith("SCRAM-SHA-256$")
        # The verifier made client-side is one PostgreSQL accepts: log in with the password
        # (every role authenticates over TCP, SCRAM: chaos_lab.local.postgres).
        conn = await asyncpg.connect(postgres.dsn(database=database, user=ORDERS_USER),
                                     password="rotated-by-deploy")
        await conn.close()
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(postgres.dsn(database=database, user=ORDERS_USER),
                                  password="shop")
    finally:
        # the password its file has, as the other tests expect
        await asyncio.to_thread(postgres.set_password, ORDERS_USER,
                                postgres.password(ORDERS_USER))
        await asyncio.to_thread(postgres.psql, "ALTER ROLE shop NOCREATEROLE", "postgres")


async def test_migrate_command_gives_up_at_its_timeout() -> None:
    started = time.monotonic()
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "shop.migrate", "--timeout", "2"],
        env={"SHOP_DATABASE_URL": "postgresql://shop@127.0.0.1:1/shop",
             "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1, result.stderr
    assert "could not be made current within 2 s" in result.stderr
    assert time.monotonic() - started < 15
