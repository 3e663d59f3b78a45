"""Where an experiment runs: the local lab, docker compose or AWS.

The experiment runner (``chaos_lab.experiment``) only talks to a ``Target``; each target
knows how to run the shop with given switches, inject and restore the faults of the catalog
(``chaos_lab.model.Fault``: each target keeps a registry of its implementations, and an unknown
or unimplemented fault is one LabError), and read what the invariants need that the public API
cannot tell (queue depths, the database's stock where it is reachable).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import asyncpg

from chaos_lab.model import Fault, Switches

Say = Callable[[str], None]


class Target(Protocol):
    name: str  # local, compose or aws

    @property
    def entry_url(self) -> str:
        """The shop's one entry (nginx, the ALB): /products and /orders."""

    @property
    def health_urls(self) -> list[str]:
        """URLs that answer 200 when the shop is in its steady state (deep health checks)."""

    @property
    def breaker_urls(self) -> dict[str, str]:
        """Each service's /health/deep (its ``breaker`` field is polled once a second during a
        run); empty where they are not reachable (AWS: the ALB routes only the API)."""

    async def apply(self, switches: Switches, say: Say) -> None:
        """Run the shop with these switches, ready to serve. A target that cannot change
        them (AWS: Terraform variables) raises ``LabError`` when they differ."""

    async def reset(self) -> None:
        """Seeded stock, no orders, empty queues and tables."""

    async def inject(self, fault: Fault, hold: float, say: Say) -> None:
        """Start the fault (found in the target's registry by ``model.implementation``).
        ``hold`` is how long it will last before ``restore``; a target whose fault restores
        itself (FIS) may use it."""

    async def restore(self, fault: Fault, say: Say) -> None:
        """End the fault; always runs, also when the experiment failed half-way; idempotent."""

    async def queue_depths(self) -> tuple[int, int]:
        """Messages in (order queue, dead-letter queue), visible and in flight."""

    async def undecided_orders(self) -> int | None:
        """Orders accepted while the database was out and not decided yet (the order
        table's index of undecided records); None where it cannot be read."""

    async def stock_in_db(self, product_id: int) -> int | None:
        """The product's stock read from the writer; None when the database is not
        reachable from here (AWS: it lives in private subnets)."""

    async def confirmed_in_db(self, product_id: int) -> int | None:
        """Confirmed orders of the product in the writer; None when not reachable."""

    async def statuses_in_db(self, order_ids: list[str]) -> dict[str, str] | None:
        """Order statuses straight from the writer, for when the API does not answer;
        None when not reachable."""


@runtime_checkable
class StopsAtOnce(Protocol):
    """A target whose restore waits for the fault to end by itself (FIS ends its experiments)
    and that can end it at once instead, when a run is halted or a guardrail breached."""

    async def stop(self, fault: Fault, say: Say) -> None:
        """End the fault now (``restore`` follows); idempotent."""


@runtime_checkable
class DescribesFault(Protocol):
    """A target that can say what identifies a fault it injected, for a halt from another
    process (AWS: the FIS experiment's id)."""

    def fault_details(self, fault: Fault) -> dict[str, str]: ...


class WriterChecks:
    """The invariants' queries on the writer, for targets that can reach it: a subclass says
    how to run a query there (None: the writer cannot be found)."""

    async def _fetch(self, query: str, *args: object) -> list[asyncpg.Record] | None:
        raise NotImplementedError

    async def stock_in_db(self, product_id: int) -> int | None:
        rows = await self._fetch("SELECT stock FROM products WHERE id = $1", product_id)
        return int(rows[0]["stock"]) if rows else None

    async def confirmed_in_db(self, product_id: int) -> int | None:
        rows = await self._fetch(
            "SELECT count(*) AS n FROM orders WHERE product_id = $1 AND status = 'confirmed'",
            product_id)
        return None if rows is None else int(rows[0]["n"])

    async def statuses_in_db(self, order_ids: list[str]) -> dict[str, str] | None:
        rows = await self._fetch("SELECT id::text AS id, status FROM orders "
                                 "WHERE id::text = ANY($1)", order_ids)
        return None if rows is None else {row["id"]: row["status"] for row in rows}


async def fetch_from(dsn: str, query: str, *args: object,
                     password: str | None = None) -> list[asyncpg.Record]:
    """One query on its own short-lived connection, every step bounded."""
    conn = await asyncpg.connect(dsn, password=password, timeout=5)
    try:
        return list(await conn.fetch(query, *args, timeout=5))
    finally:
        await conn.close(timeout=5)
