"""The local lab as an experiment target, and its faults: the FIS twin.

Each fault is a small declarative pair, ``inject`` and ``restore`` (the rollback that always
runs), over the lab's processes.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Protocol

import asyncpg

from chaos_lab.local.aws import queue_depth, undecided_orders
from chaos_lab.local.lab import ORDERS_FLEET, Lab
from chaos_lab.local.latency_proxy import write_delay
from chaos_lab.local.postgres import APP_USERS
from chaos_lab.model import (
    AwsSlowOptions,
    BrownoutOptions,
    CredentialRotationOptions,
    FailoverOptions,
    Fault,
    FaultOptions,
    FleetCrashOptions,
    RollingDeployOptions,
    Switches,
    WorkerCrashOptions,
    implementation,
)
from chaos_lab.processes import LabError, running, wait_until
from chaos_lab.targets.base import Say, WriterChecks, fetch_from


class LocalFault(Protocol):
    def inject(self, lab: Lab) -> None: ...

    def restore(self, lab: Lab) -> None:
        """Always runs, even when the experiment failed half-way; idempotent."""


class Failover:
    """Aurora's forced failover: the writer crashes and, while the reader is promoted, the
    writer AND reader endpoints have nobody to route to for ``unreachable`` seconds (the
    proxy drops its connections and holds new ones, refusing them after its wait timeout);
    then the endpoints follow the new writer. Afterwards the old writer is rebuilt as a
    replica so that the lab can go again."""

    def __init__(self, options: FaultOptions | None = None) -> None:
        self.options = options if isinstance(options, FailoverOptions) else FailoverOptions()

    def inject(self, lab: Lab) -> None:
        started = time.monotonic()
        old, new = lab.primary, lab.replica
        old.stop("immediate")
        lab.bouncer.hold()
        new.promote()
        lab.s.primary = new.name
        lab.save()
        time.sleep(max(0.0, started + self.options.unreachable - time.monotonic()))
        bouncer = lab.bouncer
        bouncer.repoint(writer_port=new.port, reader_port=new.port)
        bouncer.restore_target()

    def restore(self, lab: Lab) -> None:
        if not lab.primary.running():  # stopped half-way: finish the promotion first
            if not lab.replica.is_primary():
                lab.replica.promote()
            lab.s.primary = lab.replica.name
            lab.save()
        if not _streaming(lab):
            lab.replica.rejoin_as_replica(lab.primary)
        bouncer = lab.bouncer
        bouncer.repoint(writer_port=lab.primary.port, reader_port=lab.replica.port)
        bouncer.restore_target()


class DbOutage:
    """The proxy loses its target (deregister-db-proxy-targets on AWS): PgBouncer refuses
    new connections and drops the open ones until the target is given back."""

    def __init__(self, options: FaultOptions | None = None) -> None:
        pass

    def inject(self, lab: Lab) -> None:
        lab.bouncer.lose_target()

    def restore(self, lab: Lab) -> None:
        lab.bouncer.restore_target()


class Brownout:
    """Every database answer ``delay`` seconds late: the latency proxy between the services
    and PgBouncer holds each chunk the server sends (FIS: ECS task network latency)."""

    def __init__(self, options: FaultOptions | None = None) -> None:
        self.options = options if isinstance(options, BrownoutOptions) else BrownoutOptions()

    def inject(self, lab: Lab) -> None:
        write_delay(lab.latency_control, self.options.delay)

    def restore(self, lab: Lab) -> None:
        write_delay(lab.latency_control, 0)


class CredentialRotation:
    """The app roles' passwords change in PostgreSQL; ``gap`` seconds later at their source:
    the proxy's userlist (re-read, as RDS Proxy re-reads its secret) and the services'
    password files. Sessions are recycled meanwhile (a proxy, a pool's idle limit do it all
    the time), so new connections meet the new password before the source has it."""

    def __init__(self, options: FaultOptions | None = None) -> None:
        self.options = (options if isinstance(options, CredentialRotationOptions)
                        else CredentialRotationOptions())
        self.rotated: dict[str, str] = {}
        self.published = False

    def inject(self, lab: Lab) -> None:
        started = time.monotonic()
        self.rotated = {role: secrets.token_urlsafe(16) for role in APP_USERS}
        for role, password in self.rotated.items():
            lab.primary.set_password(role, password)
        roles = ", ".join(f"'{role}'" for role in APP_USERS)
        for node in (lab.primary, lab.replica):
            node.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                      f"WHERE usename IN ({roles})", database="postgres")
        time.sleep(max(0.0, started + self.options.gap - time.monotonic()))
        self._publish(lab)

    def restore(self, lab: Lab) -> None:
        if self.rotated and not self.published:
            self._publish(lab)

    def _publish(self, lab: Lab) -> None:
        lab.write_passwords(self.rotated)
        lab.bouncer.set_passwords(self.rotated)
        self.published = True


class AwsOutage:
    """AWS (moto's server) frozen by SIGSTOP while the database is out as well: its sockets
    still accept, nothing answers. Both come back at the restore."""

    def __init__(self, options: FaultOptions | None = None) -> None:
        pass

    def inject(self, lab: Lab) -> None:
        lab.bouncer.lose_target()
        os.kill(lab.s.pids["moto"], signal.SIGSTOP)

    def restore(self, lab: Lab) -> None:
        with suppress(ProcessLookupError, KeyError):
            os.kill(lab.s.pids["moto"], signal.SIGCONT)
        lab.bouncer.restore_target()


class WorkerCrash:
    """A database outage of ``outage`` seconds queues orders; the order-worker, holding some
    of them in flight, is killed (SIGKILL: no clean-up) as the database comes back. It is
    restarted at the restore; SQS gives its messages to the new one (visibility timeout)."""

    def __init__(self, options: FaultOptions | None = None) -> None:
        self.options = (options if isinstance(options, WorkerCrashOptions)
                        else WorkerCrashOptions())
        self.killed = False

    def inject(self, lab: Lab) -> None:
        started = time.monotonic()
        lab.bouncer.lose_target()
        time.sleep(max(0.0, started + self.options.outage - time.monotonic()))
        pid = lab.s.pids.get("worker")
        if pid:
            with suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            self.killed = True
            lab.stop_worker()  # reaps it and forgets its pid
        lab.bouncer.restore_target()

    def restore(self, lab: Lab) -> None:
        lab.bouncer.restore_target()
        if self.killed and "worker" not in lab.s.pids:
            lab.start_worker()


class ReaderLoss:
    """The replica stops. The reader endpoint moves to the writer, and commits stop waiting
    for a synchronous standby that is gone (on Aurora a reader's loss never blocks commits).
    Restore: the replica back, streaming, synchronous again, the reader endpoint on it."""

    def __init__(self, options: FaultOptions | None = None) -> None:
        pass

    def inject(self, lab: Lab) -> None:
        lab.replica.stop("immediate")
        lab.primary.require_sync_replica(False)
        lab.bouncer.repoint_reader(lab.primary.port)

    def restore(self, lab: Lab) -> None:
        if not lab.replica.running():
            lab.replica.start()
        lab.replica.follow(lab.primary)  # streaming, then synchronous again
        lab.bouncer.repoint_reader(lab.replica.port)


class AwsSlow:
    """The database is out, and every answer of the order queue (SQS) comes ``delay``
    seconds late (the latency proxy between the services and SQS): each order's wake-up has
    an unknown outcome. The order is its record in the order table all the same; the
    worker's sweep applies what no wake-up brought. FIS: ECS task network latency."""

    def __init__(self, options: FaultOptions | None = None) -> None:
        self.options = options if isinstance(options, AwsSlowOptions) else AwsSlowOptions()

    def inject(self, lab: Lab) -> None:
        lab.bouncer.lose_target()
        write_delay(lab.aws_latency_control, self.options.delay)

    def restore(self, lab: Lab) -> None:
        write_delay(lab.aws_latency_control, 0)
        lab.bouncer.restore_target()


class FleetCrash:
    """The database is out, orders are being taken into the order table, and
    ``kill_after`` seconds later every orders process is killed at once (SIGKILL: whatever it
    held in memory is gone, answers in flight included). Their process managers hold the
    listening sockets and start new ones, as a container's supervisor would; the database
    comes back at the restore. FIS: aws:ecs:stop-task on every orders task."""

    def __init__(self, options: FaultOptions | None = None) -> None:
        self.options = (options if isinstance(options, FleetCrashOptions)
                        else FleetCrashOptions())

    def inject(self, lab: Lab) -> None:
        started = time.monotonic()
        lab.bouncer.lose_target()
        time.sleep(max(0.0, started + self.options.kill_after - time.monotonic()))
        killed = [pid for name in ORDERS_FLEET for pid in lab.orders_workers(name)]
        for pid in killed:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if not killed:
            raise LabError("fleet-crash: no orders worker process found to kill")

    def restore(self, lab: Lab) -> None:
        lab.bouncer.restore_target()
        _fleet_serving(lab)


class RollingDeploy:
    """Each orders process replaced in turn, under traffic: its process manager starts a
    new one, waits until it serves, then stops the old one (SIGTERM: it finishes what it
    holds), as a rolling deployment with a minimum of 100 % healthy does; ``pause`` seconds
    between two. On ECS: a new deployment of the service."""

    def __init__(self, options: FaultOptions | None = None) -> None:
        self.options = (options if isinstance(options, RollingDeployOptions)
                        else RollingDeployOptions())

    def inject(self, lab: Lab) -> None:
        for i, name in enumerate(ORDERS_FLEET):
            if i:
                time.sleep(self.options.pause)
            old = set(lab.orders_workers(name))
            os.kill(lab.s.pids[name], signal.SIGHUP)  # uvicorn: restart the workers
            wait_until(lambda n=name, o=old: bool(lab.orders_workers(n))  # type: ignore[misc]
                       and not o & set(lab.orders_workers(n)),
                       f"{name}'s new process to replace the old", timeout=90)

    def restore(self, lab: Lab) -> None:
        _fleet_serving(lab)


class Surge:
    """Nothing breaks: the fault is the traffic, more than the shop can take, which the
    runner offers itself against the entry (chaos_lab.surge) on every target."""

    def __init__(self, options: FaultOptions | None = None) -> None:
        pass

    def inject(self, lab: Lab) -> None:
        pass

    def restore(self, lab: Lab) -> None:
        pass


def _fleet_serving(lab: Lab) -> None:
    """Every orders process of the fleet serves (its manager restarted, if it had died)."""
    for name in ORDERS_FLEET:
        if not running(lab.s.pids.get(name, 0)):
            lab.start_orders(name)
        lab.wait_ready(name, timeout=90)


def _streaming(lab: Lab) -> bool:
    """The replica runs and streams from the writer."""
    if not lab.replica.running():
        return False
    count = lab.primary.psql("SELECT count(*) FROM pg_stat_replication WHERE state = "
                             "'streaming'", database="postgres").strip()
    return count not in ("", "0")


# The lab's fault registry: one entry per fault of the catalog, made with its options.
FAULTS: dict[Fault, Callable[[FaultOptions | None], LocalFault]] = {
    Fault.FAILOVER: Failover,
    Fault.DB_OUTAGE: DbOutage,
    Fault.BROWNOUT: Brownout,
    Fault.CREDENTIAL_ROTATION: CredentialRotation,
    Fault.AWS_OUTAGE: AwsOutage,
    Fault.WORKER_CRASH: WorkerCrash,
    Fault.READER_LOSS: ReaderLoss,
    Fault.AWS_SLOW: AwsSlow,
    Fault.FLEET_CRASH: FleetCrash,
    Fault.ROLLING_DEPLOY: RollingDeploy,
    Fault.SURGE: Surge,
    # The database out for the hold; the runner's surge follows the restore.
    Fault.RECOVERY_STORM: DbOutage,
}


class LocalTarget(WriterChecks):
    """The shop as local processes (``chaos-shop lab up``)."""

    name = "local"

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self._faults: dict[Fault, LocalFault] = {}
        self._options: dict[Fault, FaultOptions] = {}

    def fault_options(self, fault: Fault, options: FaultOptions) -> None:
        """The experiment's ``fault.options`` for the next inject of ``fault``."""
        self._options[Fault(fault)] = options

    @property
    def entry_url(self) -> str:
        return self.lab.entry_url

    @property
    def health_urls(self) -> list[str]:
        return [f"{self.lab.entry_url}/products",
                *(f"{self.lab.service_url(n)}/health/deep" for n in ("catalog", *ORDERS_FLEET))]

    @property
    def breaker_urls(self) -> dict[str, str]:
        return {name: f"{self.lab.service_url(name)}/health/deep"
                for name in ("catalog", *ORDERS_FLEET)}

    async def apply(self, switches: Switches, say: Say) -> None:
        await asyncio.to_thread(self.lab.start_services, switches.env(), lambda *_: None)

    async def reset(self) -> None:
        await self.lab.reset()

    async def inject(self, fault: Fault, hold: float, say: Say) -> None:
        made = implementation(FAULTS, fault, self.name)(self._options.pop(Fault(fault), None))
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

    async def undecided_orders(self) -> int | None:
        return await asyncio.to_thread(undecided_orders, self.lab.moto.url,
                                       self.lab.resources.status_table)

    async def _fetch(self, query: str, *args: object) -> list[asyncpg.Record] | None:
        return await fetch_from(self.lab.primary.dsn(with_password=True), query, *args)
