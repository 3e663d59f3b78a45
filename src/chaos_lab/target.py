"""Where an experiment runs: the local lab, docker compose or AWS.

The experiment runner (``chaos_lab.experiment``) only talks to a ``Target``; each target
knows how to run the shop with given ``SHOP_*`` settings, inject and restore a fault, and read
what the invariants need that the public API cannot tell (queue depths, the database's stock
where it is reachable).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

Say = Callable[[str], None]

FAULT_NAMES = ("failover", "db-outage")

# The reference's two switches, as service settings: the AFTER of every experiment.
RESILIENT = {"SHOP_ENABLE_PROXY": "true", "SHOP_ENABLE_DEGRADATION": "true"}


class Target(Protocol):
    name: str  # local, compose or aws

    @property
    def entry_url(self) -> str:
        """The shop's one entry (nginx, the ALB): /products and /orders."""

    @property
    def health_urls(self) -> list[str]:
        """URLs that answer 200 when the shop is in its steady state (deep health checks)."""

    async def apply(self, settings: dict[str, str], say: Say) -> None:
        """Run the shop with these ``SHOP_*`` settings, ready to serve. A target that cannot
        change them (AWS: Terraform variables) raises ``LabError`` when they differ."""

    async def reset(self) -> None:
        """Seeded stock, no orders, empty queues and tables."""

    async def inject(self, fault: str, hold: float, say: Say) -> None:
        """Start the fault (one of ``FAULT_NAMES``). ``hold`` is how long it will last before
        ``restore``; a target whose fault restores itself (FIS) may use it."""

    async def restore(self, fault: str, say: Say) -> None:
        """End the fault; always runs, also when the experiment failed half-way; idempotent."""

    async def queue_depths(self) -> tuple[int, int]:
        """Messages in (order queue, dead-letter queue), visible and in flight."""

    async def stock_in_db(self, product_id: int) -> int | None:
        """The product's stock read from the writer; None when the database is not
        reachable from here (AWS: it lives in private subnets)."""

    async def confirmed_in_db(self, product_id: int) -> int | None:
        """Confirmed orders of the product in the writer; None when not reachable."""

    async def statuses_in_db(self, order_ids: list[str]) -> dict[str, str] | None:
        """Order statuses straight from the writer, for when the API does not answer;
        None when not reachable."""
