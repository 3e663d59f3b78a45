"""The local lab as an experiment target, and its faults: the FIS twin.

Each fault is a small declarative pair, ``inject`` and ``restore`` (the rollback that always
runs), over the lab's processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

import asyncpg

from chaos_lab.aws import queue_depth
from chaos_lab.lab import Lab
from chaos_lab.model import Fault, Switches, implementation
from chaos_lab.target import Say, WriterChecks, fetch_from


class LocalFault(Protocol):
    def inject(self, lab: Lab) -> None: ...

    def restore(self, lab: Lab) -> None:
        """Always runs, even when the experiment failed half-way."""


class Failover:
    """Aurora's forced failover: the writer crashes, the reader is promoted, the endpoints
    follow it; afterwards the old writer is rebuilt as a replica so the lab can go again."""

    def inject(self, lab: Lab) -> None:
        old, new = lab.primary, lab.replica
        old.stop("immediate")
        new.promote()
        lab.s.primary = new.name
        lab.save()
        lab.bouncer.repoint(writer_port=new.port, reader_port=new.port)

    def restore(self, lab: Lab) -> None:
        lab.replica.rejoin_as_replica(lab.primary)
        lab.bouncer.repoint(writer_port=lab.primary.port, reader_port=lab.replica.port)


class DbOutage:
    """The proxy loses its target (deregister-db-proxy-targets on AWS): PgBouncer refuses
    new connections and drops the open ones until the target is given back."""

    def inject(self, lab: Lab) -> None:
        lab.bouncer.lose_target()

    def restore(self, lab: Lab) -> None:
        lab.bouncer.restore_target()


# The lab's fault registry: one entry per fault of the catalog.
FAULTS: dict[Fault, Callable[[], LocalFault]] = {Fault.FAILOVER: Failover,
                                                 Fault.DB_OUTAGE: DbOutage}


class LocalTarget(WriterChecks):
    """The shop as local processes (``chaos-shop lab up``)."""

    name = "local"

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self._faults: dict[Fault, LocalFault] = {}

    @property
    def entry_url(self) -> str:
        return self.lab.entry_url

    @property
    def health_urls(self) -> list[str]:
        return [f"{self.lab.entry_url}/products",
                *(f"{self.lab.service_url(n)}/health/deep" for n in ("catalog", "orders"))]

    @property
    def breaker_urls(self) -> dict[str, str]:
        return {name: f"{self.lab.service_url(name)}/health/deep"
                for name in ("catalog", "orders")}

    async def apply(self, switches: Switches, say: Say) -> None:
        await asyncio.to_thread(self.lab.start_services, switches.env(), lambda *_: None)

    async def reset(self) -> None:
        await self.lab.reset()

    async def inject(self, fault: Fault, hold: float, say: Say) -> None:
        made = implementation(FAULTS, fault, self.name)()
        self._faults[Fault(fault)] = made
        await asyncio.to_thread(made.inject, self.lab)

    async def restore(self, fault: Fault, say: Say) -> None:
        implementation(FAULTS, fault, self.name)
        injected = self._faults.pop(Fault(fault), None)
        if injected is not None:
            await asyncio.to_thread(injected.restore, self.lab)

    async def queue_depths(self) -> tuple[int, int]:
        moto, resources = self.lab.moto.url, self.lab.resources
        return (await asyncio.to_thread(queue_depth, moto, resources.queue_url),
                await asyncio.to_thread(queue_depth, moto, resources.dlq_url))

    async def _fetch(self, query: str, *args: object) -> list[asyncpg.Record] | None:
        return await fetch_from(self.lab.primary.dsn(), query, *args)
