"""A writer failover under traffic, through PgBouncer: the resilient settings recover on their
own with no failed write; the fragile settings never recover (the reference's BEFORE)."""

import asyncio
import time

import httpx

from conftest import Cluster
from orders.main import app as orders_app
from support import serve


async def order_traffic(client: httpx.AsyncClient, stop: asyncio.Event,
                        outcomes: list[tuple[float, int]]) -> None:
    """One order every 50 ms; a timeout or connection error counts as status 0."""
    while not stop.is_set():
        try:
            response = await client.post("/orders", json={"product_id": 2, "quantity": 1})
            status = response.status_code
        except httpx.HTTPError:
            status = 0
        outcomes.append((time.monotonic(), status))
        await asyncio.sleep(0.05)


def settings_for(cluster: Cluster, **extra: str) -> dict[str, str]:
    return {
        "SHOP_DATABASE_URL": cluster.bouncer.dsn(with_password=True),
        "SHOP_DATABASE_READER_URL": cluster.bouncer.dsn(reader=True, with_password=True),
        "SHOP_ENABLE_DEGRADATION": "false",
        "SHOP_MIGRATE_MAX_BACKOFF_SECONDS": "0.5",
        **extra,
    }


async def run_failover(client: httpx.AsyncClient, cluster: Cluster,
                       after: float) -> tuple[list[tuple[float, int]], float]:
    stop, outcomes = asyncio.Event(), []
    traffic = asyncio.create_task(order_traffic(client, stop, outcomes))
    await asyncio.sleep(1.0)
    fault_at = time.monotonic()
    await asyncio.to_thread(cluster.fail_over)
    await asyncio.sleep(after)
    stop.set()
    await asyncio.wait_for(traffic, timeout=10)
    return outcomes, fault_at


async def test_resilient_mode_recovers_with_no_failed_write(cluster: Cluster) -> None:
    async with serve(orders_app, timeout=5, **settings_for(cluster)) as client:
        outcomes, fault_at = await asyncio.wait_for(run_failover(client, cluster, after=6),
                                                    timeout=60)
        deep = await client.get("/health/deep")
    statuses = [status for _, status in outcomes]
    assert len(statuses) > 40
    assert set(statuses) == {201}, f"failed writes: {[s for s in statuses if s != 201]}"
    assert any(at > fault_at + 3 for at, _ in outcomes)  # traffic went on after the fault
    assert deep.status_code == 200 and deep.json()["database"] == "connected"
    # The orders really are on the new writer.
    confirmed = cluster.replica.psql("SELECT count(*) FROM orders WHERE status = 'confirmed'")
    stock = cluster.replica.psql("SELECT stock FROM products WHERE id = 2")
    assert int(confirmed) == len(statuses) and int(stock) == 150 - len(statuses)


async def test_fragile_mode_never_recovers(cluster: Cluster) -> None:
    env = settings_for(cluster, SHOP_ENABLE_PROXY="false")
    async with serve(orders_app, timeout=5, **env) as client:
        outcomes, fault_at = await asyncio.wait_for(run_failover(client, cluster, after=4),
                                                    timeout=60)
        later = await client.post("/orders", json={"product_id": 2, "quantity": 1})
        deep = await client.get("/health/deep")
    before = [status for at, status in outcomes if at < fault_at]
    after = [status for at, status in outcomes if at > fault_at + 2]
    assert before and set(before) == {201}
    assert after and 201 not in after, "the fragile mode should not recover on its own"
    assert later.status_code == 500
    assert deep.status_code == 503 and deep.json()["database"] == "error"


async def test_demoted_writer_read_only_errors_reset_the_pool(cluster: Cluster) -> None:
    """Pooled connections left on a demoted writer fail with SQLSTATE 25006: the resilient
    mode must drop them and reconnect to the new writer, not answer 500 forever."""
    async with serve(orders_app, timeout=5, **settings_for(cluster)) as client:
        warm = await asyncio.gather(*(
            client.post("/orders", json={"product_id": 2, "quantity": 1}) for _ in range(5)
        ))
        assert {r.status_code for r in warm} == {201}
        # The old writer turns read-only while the app's pooled connections sit on it.
        cluster.primary.psql("ALTER SYSTEM SET default_transaction_read_only = on",
                             database="postgres")
        cluster.primary.psql("SELECT pg_reload_conf()", database="postgres")
        cluster.replica.promote()
        cluster.bouncer.repoint(writer_port=cluster.replica.port,
                                reader_port=cluster.replica.port)
        after = [await client.post("/orders", json={"product_id": 2, "quantity": 1})
                 for _ in range(10)]
    assert [r.status_code for r in after] == [201] * 10
    assert int(cluster.replica.psql("SELECT count(*) FROM orders WHERE status = 'confirmed'")) >= 10
