"""What docker compose waits on: a service is healthy in /health/deep only once its schema is
in place. The case compose met: PgBouncer's writer endpoint led to a read-only standby (after
an odd number of failovers), the database answered every ping, the migrations could never
run, and the orders service said "healthy" while it queued every order forever."""

import uuid
from collections.abc import Iterator

import httpx
import pytest

from chaos_lab.local.postgres import USER, PostgresNode
from orders.main import app as orders_app
from support import eventually, serve


@pytest.fixture
def read_only_database(postgres: PostgresNode) -> Iterator[str]:
    """An empty database where nothing can be written, as on a standby (SQLSTATE 25006)."""
    name = f"read_only_{uuid.uuid4().hex[:8]}"
    postgres.psql(f"CREATE DATABASE {name} OWNER {USER}", database="postgres")
    postgres.psql(f"ALTER DATABASE {name} SET default_transaction_read_only = on",
                  database="postgres")
    yield name
    postgres.psql(f"DROP DATABASE {name} WITH (FORCE)", database="postgres")


async def test_deep_health_is_unhealthy_until_the_schema_is_ready(
        postgres: PostgresNode, read_only_database: str) -> None:
    async with serve(orders_app, ready=False, SHOP_ENABLE_DEGRADATION="false",
                     SHOP_MIGRATE_MAX_BACKOFF_SECONDS="0.5",
                     SHOP_DATABASE_URL=postgres.dsn(database=read_only_database,
                                                   with_password=True)) as client:
        deep = await client.get("/health/deep")
        order = await client.post("/orders", json={"product_id": 2, "quantity": 1})
        assert deep.status_code == 503, deep.text
        assert deep.json()["status"] == "unhealthy"
        assert deep.json()["database"] == "connected"  # the ping works: not what ready means
        assert deep.json()["schema_ready"] is False
        assert deep.json()["error"] == "schema not ready"
        assert order.status_code == 503 and order.json() == {"error": "database not ready"}

        # writable again (a writer behind the endpoint): migrated, then healthy
        postgres.psql(f"ALTER DATABASE {read_only_database} "
                      "SET default_transaction_read_only = off", database="postgres")

        async def healthy() -> httpx.Response | None:
            response = await client.get("/health/deep")
            return response if response.status_code == 200 else None

        ready = await eventually(healthy, "the deep health to pass", timeout=20)
        assert ready.json()["status"] == "healthy" and ready.json()["schema_ready"] is True
