"""Real parts, started by the suite: PostgreSQL from the local binaries (as ``postgres`` when
run as root), PgBouncer and moto's server where a test needs them. Nothing is mocked."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path

import asyncpg
import pytest
from moto.server import ThreadedMotoServer

from chaos_lab.local.aws import ShopResources, create_resources
from chaos_lab.local.pgbouncer import PgBouncer
from chaos_lab.local.postgres import PostgresNode
from chaos_lab.processes import free_port, give_to_service_user
from shop.db import apply_migrations, reset_catalog
from support import FakeShop, cure


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run the long experiments")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="long experiment: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@dataclass
class Cluster:
    primary: PostgresNode
    replica: PostgresNode
    bouncer: PgBouncer

    def fail_over(self) -> None:
        """Stop the primary hard, promote the replica, repoint the proxy's endpoints."""
        self.primary.stop("immediate")
        self.replica.promote()
        self.bouncer.repoint(writer_port=self.replica.port, reader_port=self.replica.port)


@pytest.fixture(scope="session")
def work_dir() -> Iterator[Path]:
    """A scratch folder the postgres user can reach (pytest's tmp_path is root-only)."""
    root = Path(tempfile.mkdtemp(prefix="chaos-shop-tests-"))
    root.chmod(0o755)
    give_to_service_user(root)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(work_dir: Path) -> Iterator[PostgresNode]:
    node = PostgresNode("primary", work_dir / "pg-primary", free_port())
    node.init_primary()
    yield node
    node.stop("immediate")


@pytest.fixture(scope="session")
async def migrated(postgres: PostgresNode) -> str:
    """The owner's URL, its password in it (the node's roles authenticate: SCRAM)."""
    conn = await asyncpg.connect(postgres.dsn(with_password=True))
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()
    return postgres.dsn(with_password=True)


@pytest.fixture
async def shop_db(migrated: str) -> AsyncIterator[str]:
    """The seeded catalog with no orders; yields the database URL."""
    conn = await asyncpg.connect(migrated)
    try:
        await reset_catalog(conn)
    finally:
        await conn.close()
    yield migrated


@pytest.fixture
async def db(shop_db: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection for the tests' own checks (stock, order rows)."""
    conn = await asyncpg.connect(shop_db)
    yield conn
    await conn.close()


@pytest.fixture
async def poisoned_product(db: asyncpg.Connection) -> AsyncIterator[int]:
    """A trigger that RAISEs on every stock update of product 3: an error that is not the
    database being out, and that no retry cures until someone drops it (``support.cure``)."""
    await db.execute("""
        CREATE FUNCTION test_poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'product % refused by a test trigger', NEW.id; END $$""")
    await db.execute("""
        CREATE TRIGGER test_poison BEFORE UPDATE ON products FOR EACH ROW
        WHEN (NEW.id = 3) EXECUTE FUNCTION test_poison()""")
    yield 3
    await cure(db)


@pytest.fixture(autouse=True)
def no_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never reach a real AWS account from a test (aiobotocore's own tests do the same)."""
    for key in list(os.environ):
        if key.startswith("AWS_") or key.startswith("SHOP_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def cluster(work_dir: Path) -> Iterator[Cluster]:
    """A primary, a streaming replica and PgBouncer in front: the failover topology."""
    primary = PostgresNode("node-a", work_dir / "cluster-a", free_port())
    replica = PostgresNode("node-b", work_dir / "cluster-b", free_port())
    bouncer = PgBouncer(work_dir / "pgbouncer", free_port())
    primary.init_primary()
    replica.init_replica(primary)
    bouncer.start(writer_port=primary.port, reader_port=replica.port)
    yield Cluster(primary, replica, bouncer)
    bouncer.stop()
    for node in (primary, replica):
        node.stop("immediate")


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto's server over HTTP: the AWS API emulator, for the whole session."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws(moto_url: str) -> ShopResources:
    """A queue with its DLQ and the two tables, with names of the test's own."""
    return create_resources(moto_url, prefix=f"t{uuid.uuid4().hex[:10]}")


@pytest.fixture
def aws_env(moto_url: str, aws: ShopResources) -> dict[str, str]:
    return aws.settings(moto_url)


@pytest.fixture(scope="session")
def fake_shop() -> Iterator[str]:
    """A fake shop (support.FakeShop) served in a thread, for the session."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeShop)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def shop_url(fake_shop: str) -> Iterator[str]:
    """The fake shop's entry, healthy at the test's start and end: the runner's tests'."""
    FakeShop.failing, FakeShop.slow = False, 0.0
    yield fake_shop
    FakeShop.failing, FakeShop.slow = False, 0.0
