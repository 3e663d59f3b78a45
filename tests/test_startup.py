"""The lab's first lesson: a service started before its database must come up on its own."""

import asyncio
from pathlib import Path

from chaos_lab.local.postgres import USER, PostgresNode
from chaos_lab.processes import free_port
from orders.main import app as orders_app
from shop.db import Endpoint, apply_migrations, migration_files
from shop.settings import Settings
from support import eventually, serve


async def test_service_started_before_postgres_migrates_when_it_appears(work_dir: Path) -> None:
    node = PostgresNode("late", work_dir / "pg-late", free_port())
    # the owner's password file: there once the node is (it may be already: the nodes of one
    # folder share their passwords), read again at each attempt until then
    env = {"SHOP_DATABASE_URL": node.dsn(),
           "SHOP_DATABASE_PASSWORD_FILE": str(node.password_file(USER)),
           "SHOP_MIGRATE_MAX_BACKOFF_SECONDS": "0.5"}
    try:
        async with serve(orders_app, ready=False, **env) as client:
            health = await client.get("/health")
            early = await client.post("/orders", json={"product_id": 2, "quantity": 1})
            assert health.status_code == 200
            assert early.status_code == 503 and early.json() == {"error": "database not ready"}

            await asyncio.sleep(1.0)  # let a few start-up attempts fail first
            await asyncio.to_thread(node.init_primary)

            async def order_accepted() -> bool:
                response = await client.post("/orders", json={"product_id": 2, "quantity": 1})
                return response.status_code == 201

            await eventually(order_accepted, "the first order after PostgreSQL appeared",
                             timeout=30, interval=0.25)
            versions = node.psql("SELECT string_agg(version, ',' ORDER BY version) "
                                 "FROM schema_migrations")
            assert versions.strip() == ",".join(v for v, _ in migration_files())
    finally:
        node.stop("immediate")


async def test_replicas_starting_together_migrate_once(postgres: PostgresNode) -> None:
    """The advisory lock: four processes migrate an empty database at once; one applies every
    migration, the others find them applied, none fails."""
    postgres.psql("DROP DATABASE IF EXISTS race", database="postgres")
    postgres.psql("CREATE DATABASE race OWNER shop", database="postgres")
    url = postgres.dsn(database="race", with_password=True)
    endpoints = [Endpoint("writer", url, Settings(database_url=url)) for _ in range(4)]
    for endpoint in endpoints:
        await endpoint.open()
    try:
        results = await asyncio.gather(*(
            e.run(apply_migrations, wait_ready=False) for e in endpoints
        ))
    finally:
        for endpoint in endpoints:
            await endpoint.close()
    assert sorted(results) == [[], [], [], [v for v, _ in migration_files()]]
