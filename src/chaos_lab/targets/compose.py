"""The docker compose stack (docker-compose.yml) as an experiment target: the same experiments
as the local lab, with the faults made through ``docker compose`` commands.

- settings: ``docker compose up -d --force-recreate`` of the shop's services with the
  ``SHOP_*`` switches in the environment (the compose file interpolates them), then a wait
  until the APIs (the catalog, each orders replica) are ready and the shop answers through
  nginx;
- failover: ``docker compose kill`` the writer node, and PgBouncer holds both endpoints (its
  admin console's KILL: every connection dropped, new ones wait, refused after its
  ``query_wait_timeout``) while the peer is promoted (``pg_promote``); when the
  ``unreachable`` window has passed (counted from the inject, as the lab's), both endpoints
  point at the new writer (deploy/compose/pgbouncer/route.sh, then SIGHUP) and are resumed;
  restore: start the old writer again, which rejoins as a replica of the new one
  (deploy/compose/postgres/node.sh), route the reader endpoint to it, and resume the
  endpoints should the inject have stopped during the window;
- db-outage: PgBouncer loses its target through its admin console (DISABLE + KILL the
  endpoints; RESUME + ENABLE to restore), as the lab's does;
- brownout: every database answer ``delay`` seconds late: the latency proxy between the
  services and PgBouncer (src/chaos_lab/local/latency_proxy.py in moto's image) is told the
  delay with ``docker compose exec``; restore: a delay of 0;
- credential-rotation: new passwords for the app roles on the writer (ALTER ROLE, their
  sessions ended: deploy/compose/postgres/set-passwords.sh), then ``gap`` seconds later at
  their source: the services' password files (the one-shot ``secrets`` again, ``--rotate``)
  and PgBouncer's auth file (userlist.sh, then SIGHUP); restore: the second step, if the
  inject did not get to it. The new passwords stay (the volumes and the database keep them);
- aws-outage: the db-outage, and moto's container frozen (``docker compose pause``): its port
  still accepts, nothing answers; restore: unpause, then the target back;
- worker-crash: a db-outage of ``outage`` seconds queues orders, then the order-worker is
  killed (SIGKILL) holding some in flight and the target given back; restore: ``docker
  compose start order-worker``;
- reader-loss: commits stop waiting for a synchronous standby, the replica's container is
  killed and PgBouncer's reader endpoint routed to the writer; restore: the failover's
  (the replica started, streaming, synchronous again, the reader endpoint on it);
- aws-slow: the db-outage, and every answer of SQS ``delay`` seconds late: the second latency
  proxy, ``sqs-proxy`` between the services and moto's SQS (``AWS_ENDPOINT_URL_SQS``), is told
  the delay; restore: a delay of 0, then the target back;
- fleet-crash: the db-outage, and ``kill_after`` seconds into it every orders replica's
  uvicorn worker killed (SIGKILL, inside its container: ``docker compose exec``); each
  replica's process manager (PID 1, src/shop/serve.py) starts a new one on the socket it
  holds; restore: the target back, each replica serving (/health/deep 200);
- rolling-deploy: each orders replica in turn replaced under traffic: SIGHUP to its process
  manager (``docker compose kill -s SIGHUP``), which starts a new worker and stops the old one
  once the new one serves; the next one ``pause`` seconds after this one's new worker serves;
  restore: each replica serving.

A fault's options (``fault.options`` of the experiment) arrive through ``fault_options``
before its inject; the defaults are the lab's. Every restore may run twice, or with nothing
injected.

The orders service runs as a fleet of two replicas (``orders-1``, ``orders-2``: one definition
in docker-compose.yml), each published on a port of its own, behind nginx, as in the lab.

The compose nodes keep their service names (``postgres``, ``postgres-replica``) while their
roles swap: which one is the writer is asked of the nodes themselves. Host ports are the ones
docker-compose.yml publishes on 127.0.0.1. Of the stack's passwords this target needs two, the
ones ``docker compose up`` was given: the owner's (``POSTGRES_OWNER_PASSWORD``: the checks and
the reset read and write the tables) and PgBouncer's admin console's
(``PGBOUNCER_ADMIN_PASSWORD``), each from the environment, else from the project's ``.env``,
as compose reads them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import asyncpg
import httpx

from chaos_lab.local.aws import ShopResources, client, purge, queue_depth, undecided_orders
from chaos_lab.local.lab import get_ok
from chaos_lab.model import (
    AwsSlowOptions,
    FailoverOptions,
    Fault,
    FleetCrashOptions,
    RollingDeployOptions,
    Switches,
    implementation,
)
from chaos_lab.processes import LabError, ToolMissing, run, wait_until
from chaos_lab.targets.base import Say, WriterChecks, fetch_from
from shop.db import reset_catalog

NODES = ("postgres", "postgres-replica")
ORDERS_FLEET = ("orders-1", "orders-2")  # the orders service's replicas, behind nginx
SHOP_SERVICES = ("catalog", *ORDERS_FLEET, "order-worker")
# The settings docker-compose.yml passes through from the environment (${NAME:-default}).
PASSED_THROUGH = ("SHOP_ENABLE_PROXY", "SHOP_ENABLE_DEGRADATION", "SHOP_LOG_LEVEL")
ENDPOINTS = ("shop", "shop_reader")  # PgBouncer's writer and reader databases
ROUTE = "/etc/chaos-shop/pgbouncer/route.sh"
AWS = "moto"  # the AWS emulator's service
WORKER = "order-worker"
LATENCY = ("latency-proxy", "python", "/opt/chaos-shop/latency_proxy.py", "set")
SQS_LATENCY = ("sqs-proxy", "python", "/opt/chaos-shop/latency_proxy.py", "set")
# Run in an orders container (``python -c SCRIPT MANAGER [kill]``): the pids of the uvicorn
# workers, the children of the process manager (MANAGER: PID 1 there, src/shop/serve.py) that
# multiprocessing's spawn started; with ``kill``, each killed first (SIGKILL). The image has no
# ps: /proc is read.
ORDERS_WORKERS = '''
import os, signal, sys
workers = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/stat") as stat, open(f"/proc/{pid}/cmdline", "rb") as cmd:
            parent, command = stat.read().rpartition(")")[2].split()[1], cmd.read()
    except OSError:
        continue
    if parent == sys.argv[1] and b"spawn_main" in command:
        workers.append(int(pid))
for pid in workers:
    if sys.argv[2:] == ["kill"]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
print(*sorted(workers))
'''
SET_PASSWORDS = "/etc/chaos-shop/postgres/set-passwords.sh"
USERLIST = "/etc/chaos-shop/pgbouncer/userlist.sh"
# The passwords this target logs in with (the owner's, PgBouncer's admin console's).
OWNER_PASSWORD = "POSTGRES_OWNER_PASSWORD"
ADMIN_PASSWORD = "PGBOUNCER_ADMIN_PASSWORD"
# The app roles, and the variable that hands each one's password to the containers.
APP_ROLES = {"shop_orders": "POSTGRES_ORDERS_PASSWORD",
             "shop_catalog": "POSTGRES_CATALOG_PASSWORD"}
PREFIX = "chaos-shop"  # the AWS resources' names (deploy/compose/aws-init)
NO_ORDER = "00000000-0000-0000-0000-000000000000"  # looked up to see the orders route answer


@dataclass(frozen=True)
class ComposePorts:
    """What docker-compose.yml publishes on 127.0.0.1."""

    entry: int = 8080
    catalog: int = 8001
    orders: tuple[int, ...] = (8002, 8003)  # each replica's, in ORDERS_FLEET's order
    worker: int = 8081
    postgres: int = 5432
    replica: int = 5433
    pgbouncer: int = 6432
    moto: int = 5000

    def node(self, service: str) -> int:
        return self.postgres if service == NODES[0] else self.replica

    def orders_replica(self, service: str) -> int:
        return self.orders[ORDERS_FLEET.index(service)]


def peer(node: str) -> str:
    return NODES[1] if node == NODES[0] else NODES[0]


class ComposeTarget(WriterChecks):
    """The shop as ``docker compose up`` runs it (``--target compose``)."""

    name = "compose"

    def __init__(self, project_dir: Path = Path("."), *, compose_file: str = "docker-compose.yml",
                 docker: str = "docker", ports: ComposePorts | None = None,
                 ready_timeout: float = 120, command_timeout: float = 120) -> None:
        self.project_dir = project_dir.resolve()
        self.compose_file = self.project_dir / compose_file
        self.docker = docker
        self.ports = ports or ComposePorts()
        self.ready_timeout = ready_timeout
        self.command_timeout = command_timeout
        self._options: dict[Fault, object] = {}
        # what an inject did, for its restore (which always runs, and may run twice)
        self._worker_killed = False
        self._rotated: dict[str, str] = {}  # variable: new password, until it is published

    # Where things are ---------------------------------------------------------------------

    @property
    def entry_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.entry}"

    @property
    def health_urls(self) -> list[str]:
        return [f"{self.entry_url}/products",
                f"http://127.0.0.1:{self.ports.catalog}/health/deep",
                *(self.orders_health(service) for service in ORDERS_FLEET)]

    def orders_health(self, service: str) -> str:
        """An orders replica's deep health, on its own published port."""
        return f"http://127.0.0.1:{self.ports.orders_replica(service)}/health/deep"

    @property
    def moto_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.moto}"

    @property
    def password(self) -> str:
        """The owner's: the tables the invariants read and the reset rewrites."""
        return self._secret(OWNER_PASSWORD)

    @property
    def admin_password(self) -> str:
        """PgBouncer's admin console's."""
        return self._secret(ADMIN_PASSWORD)

    def _secret(self, name: str) -> str:
        """A variable as compose reads it: the environment first, then the project's .env."""
        value = os.environ.get(name) or dotenv(self.project_dir / ".env").get(name)
        if not value:
            raise LabError(f"{name} is not set: export the one the compose stack was started "
                           "with, or keep it in .env beside docker-compose.yml (.env.example)")
        return value

    # Commands -----------------------------------------------------------------------------

    def _run(self, cmd: Sequence[str], env: dict[str, str] | None = None,
             timeout: float | None = None) -> str:
        """Run a command to completion through the lab's one runner (a LabError on failure)."""
        return run(cmd, env=env, timeout=timeout or self.command_timeout,
                   missing="the compose target needs the docker client with its compose "
                           "plugin, and psql").stdout

    def compose(self, *args: str, env: dict[str, str] | None = None,
                timeout: float | None = None) -> str:
        return self._run([self.docker, "compose", "-f", str(self.compose_file), *args],
                         env=env, timeout=timeout)

    def psql(self, node: str, *commands: str, database: str = "postgres") -> str:
        """SQL inside a node's container (local socket, as postgres)."""
        args = [arg for command in commands for arg in ("-c", command)]
        return self.compose("exec", "-T", node, "psql", "-U", "postgres", "-d", database,
                            "-v", "ON_ERROR_STOP=1", "-XAtq", *args)

    def pgbouncer_admin(self, *commands: str, stop_on_error: bool = True) -> str:
        """PgBouncer's admin console through its published port (the host's psql)."""
        args = [arg for command in commands for arg in ("-c", command)]
        on_error = ["-v", "ON_ERROR_STOP=1"] if stop_on_error else []
        return self._run(["psql", "-h", "127.0.0.1", "-p", str(self.ports.pgbouncer), "-U",
                          "pgbouncer", "-d", "pgbouncer", *on_error, "-XAtq", *args],
                         env={"PGPASSWORD": self.admin_password, "PGCONNECT_TIMEOUT": "5"},
                         timeout=min(30, self.command_timeout))

    def route(self, writer: str, reader: str) -> None:
        """Point PgBouncer's writer and reader endpoints at these nodes; it reloads on SIGHUP."""
        self.compose("exec", "-T", "pgbouncer", "sh", ROUTE, writer, reader)
        self.compose("kill", "-s", "SIGHUP", "pgbouncer")

    def writer(self) -> str | None:
        """The node that is a writer now (not in recovery), None when neither answers so."""
        for node in NODES:
            try:
                if self.psql(node, "SELECT pg_is_in_recovery()").strip() == "f":
                    return node
            except ToolMissing:
                raise
            except LabError:
                continue  # stopped, killed, or starting
        return None

    def _streaming(self, writer: str) -> bool:
        try:
            return self.psql(writer, "SELECT count(*) FROM pg_stat_replication "
                                     "WHERE state = 'streaming'").strip() not in ("", "0")
        except LabError:
            return False

    # The target ---------------------------------------------------------------------------

    @property
    def breaker_urls(self) -> dict[str, str]:
        return {"catalog": self.health_urls[1],
                **{service: self.orders_health(service) for service in ORDERS_FLEET}}

    async def apply(self, switches: Switches, say: Say) -> None:
        await asyncio.to_thread(self._apply, switches, say)

    def _apply(self, switches: Switches, say: Say) -> None:
        # Without degradation there is no queue to drain: no worker, as in the lab.
        services = SHOP_SERVICES if switches.degradation else SHOP_SERVICES[:-1]
        say(f"compose: recreating {', '.join(services)} ({switches})")
        self.compose("up", "-d", "--force-recreate", *services, env=switches.env(),
                     timeout=max(self.command_timeout, 300))
        if not switches.degradation:
            self.compose("stop", "order-worker")
        # Ready means the schema is in place: the first deep health check that passes.
        for url in self.health_urls[1:]:
            wait_until(partial(get_ok, url), url, self.ready_timeout, interval=1)
        # ... and that the shop answers through the entry: nginx finds the recreated
        # containers by asking Docker's DNS again, which takes it a moment.
        wait_until(self.entry_answers, f"the shop through the entry {self.entry_url}",
                   self.ready_timeout, interval=0.5)
        say("compose: the shop answers through the entry")

    def entry_answers(self, rounds: int = 3) -> bool:
        """Both routes of the entry answer from their service, ``rounds`` times in a row: the
        catalog lists the products (200), the orders service looks up an order that does not
        exist (its own 404, JSON, not nginx's 502 page)."""
        try:
            with httpx.Client(base_url=self.entry_url, timeout=2) as http:
                for round_ in range(rounds):
                    if round_:
                        time.sleep(0.2)
                    if http.get("/products").status_code != 200:
                        return False
                    lookup = http.get(f"/orders/{NO_ORDER}")
                    if lookup.status_code != 404 or not lookup.headers.get(
                            "content-type", "").startswith("application/json"):
                        return False
        except httpx.HTTPError:
            return False
        return True

    async def reset(self) -> None:
        dsn = await self._writer_dsn()
        if dsn is None:
            raise LabError("no writer answers on the published PostgreSQL ports "
                           f"{self.ports.postgres} and {self.ports.replica}")
        conn = await asyncpg.connect(dsn, password=self.password, timeout=5)
        try:
            await reset_catalog(conn)
        finally:
            await conn.close(timeout=5)
        await asyncio.to_thread(purge, self.moto_url, await asyncio.to_thread(self.resources))

    def fault_options(self, fault: Fault, options: object) -> None:
        """The experiment's ``fault.options`` for the next inject of ``fault`` (the model's
        options object: its fields are read by name, with the lab's defaults)."""
        self._options[Fault(fault)] = options

    def option(self, fault: Fault, name: str, default: float) -> float:
        return float(getattr(self._options.get(fault), name, default))

    async def inject(self, fault: Fault, hold: float, say: Say) -> None:
        start, _ = implementation(FAULTS, fault, self.name)
        await asyncio.to_thread(start, self, say)

    async def restore(self, fault: Fault, say: Say) -> None:
        _, end = implementation(FAULTS, fault, self.name)
        await asyncio.to_thread(end, self, say)

    def _lose_target(self, say: Say) -> None:
        say("compose: pgbouncer loses its target (DISABLE + KILL)")
        self.pgbouncer_admin(*_each("DISABLE", "KILL"))

    def _restore_target(self, say: Say) -> None:
        say("compose: pgbouncer gets its target back (RESUME + ENABLE)")
        # RESUME of an endpoint that is not paused is an error psql reports and goes on
        # from: restoring twice, or what was never injected, is harmless.
        self.pgbouncer_admin(*_each("RESUME", "ENABLE"), stop_on_error=False)

    def _brownout(self, say: Say) -> None:
        delay = self.option(Fault.BROWNOUT, "delay", 3.0)
        say(f"compose: every database answer {delay:g}s late (latency-proxy)")
        self.compose("exec", "-T", *LATENCY, f"{delay:g}")

    def _brownout_over(self, say: Say) -> None:
        say("compose: database answers on time again (latency-proxy)")
        self.compose("exec", "-T", *LATENCY, "0")

    def _rotate_credentials(self, say: Say) -> None:
        started = time.monotonic()
        gap = self.option(Fault.CREDENTIAL_ROTATION, "gap", 5.0)
        writer = self.writer()
        if writer is None:
            raise LabError("no PostgreSQL node is a writer: no password to rotate")
        # Handed to the containers through the environment (-e NAME), never a command line.
        rotated = {variable: secrets.token_hex(16) for variable in APP_ROLES.values()}
        say(f"compose: new passwords for {', '.join(APP_ROLES)} on {writer}, their sessions "
            f"ended; at their source in {gap:g}s")
        self._rotated = rotated
        self.compose("exec", "-T", *_env_names(rotated), writer, "bash", SET_PASSWORDS,
                     env=rotated)
        time.sleep(max(0.0, started + gap - time.monotonic()))
        self._publish_passwords(say)

    def _publish_passwords(self, say: Say) -> None:
        """The second step of a rotation: the services' password files, then PgBouncer's
        auth file. Idempotent; nothing to do when the inject did it."""
        if not self._rotated:
            return
        say("compose: the new passwords at their source (the services' password files, "
            "PgBouncer's auth file)")
        # the compose file hands the variables to the one-shot (interpolation)
        self.compose("run", "--rm", "--no-deps", "-T", "secrets", "--rotate",
                     env=self._rotated)
        self.compose("exec", "-T", "pgbouncer", "sh", USERLIST)
        self.compose("kill", "-s", "SIGHUP", "pgbouncer")
        self._rotated = {}

    def _aws_outage(self, say: Say) -> None:
        self._lose_target(say)
        say(f"compose: {AWS} frozen (docker compose pause)")
        self.compose("pause", AWS)

    def _aws_back(self, say: Say) -> None:
        say(f"compose: {AWS} thawed (docker compose unpause)")
        try:
            self.compose("unpause", AWS)
        except ToolMissing:
            raise
        except LabError as exc:
            if "not paused" not in str(exc):  # restoring twice, or what was never paused
                raise
        self._restore_target(say)

    def _running(self, service: str) -> bool:
        return bool(self.compose("ps", "-q", "--status", "running", service).strip())

    def _crash_worker(self, say: Say) -> None:
        started = time.monotonic()
        outage = self.option(Fault.WORKER_CRASH, "outage", 8.0)
        self._lose_target(say)
        say(f"compose: orders queue for {outage:g}s")
        time.sleep(max(0.0, started + outage - time.monotonic()))
        if self._running(WORKER):
            say(f"compose: {WORKER} killed (SIGKILL) with orders in flight")
            self.compose("kill", "-s", "SIGKILL", WORKER)
            self._worker_killed = True
        else:  # no degradation: no worker runs, nothing to kill
            say(f"compose: no {WORKER} running, nothing to kill")
        self._restore_target(say)

    def _restart_worker(self, say: Say) -> None:
        self._restore_target(say)
        if self._worker_killed:
            say(f"compose: {WORKER} started again")
            self.compose("start", WORKER)
            self._worker_killed = False

    def _aws_slow(self, say: Say) -> None:
        delay = self.option(Fault.AWS_SLOW, "delay", AwsSlowOptions().delay)
        self._lose_target(say)
        say(f"compose: every SQS answer {delay:g}s late (sqs-proxy)")
        self.compose("exec", "-T", *SQS_LATENCY, f"{delay:g}")

    def _aws_on_time(self, say: Say) -> None:
        say("compose: SQS answers on time again (sqs-proxy)")
        try:
            self.compose("exec", "-T", *SQS_LATENCY, "0")
        finally:
            self._restore_target(say)

    def orders_workers(self, service: str, *, kill: bool = False) -> list[int]:
        """The uvicorn workers' pids in an orders replica's container (killed first, SIGKILL,
        with ``kill``)."""
        found = self.compose("exec", "-T", service, "python", "-c", ORDERS_WORKERS, "1",
                             *(["kill"] if kill else []))
        return [int(pid) for pid in found.split()]

    def _crash_fleet(self, say: Say) -> None:
        started = time.monotonic()
        kill_after = self.option(Fault.FLEET_CRASH, "kill_after",
                                 FleetCrashOptions().kill_after)
        self._lose_target(say)
        say(f"compose: orders taken into the order table for {kill_after:g}s, then every "
            "orders replica's worker killed (SIGKILL)")
        time.sleep(max(0.0, started + kill_after - time.monotonic()))
        killed = {service: self.orders_workers(service, kill=True) for service in ORDERS_FLEET}
        say("compose: killed " + ", ".join(f"{service}'s worker {pids}"
                                           for service, pids in killed.items())
            + "; their process managers start new ones")
        if not any(killed.values()):
            raise LabError("fleet-crash: no orders worker process found to kill")

    def _fleet_back(self, say: Say) -> None:
        self._restore_target(say)
        self._fleet_serving(say)

    def _fleet_serving(self, say: Say) -> None:
        """Every orders replica serves (its container started again, should it have
        stopped): idempotent."""
        for service in ORDERS_FLEET:
            if not self._running(service):
                say(f"compose: {service} started again")
                self.compose("start", service)
            url = self.orders_health(service)
            wait_until(partial(get_ok, url), f"{service} to serve ({url})",
                       self.ready_timeout, interval=0.5)
        say(f"compose: {', '.join(ORDERS_FLEET)} serve")

    def _rolling_deploy(self, say: Say) -> None:
        pause = self.option(Fault.ROLLING_DEPLOY, "pause", RollingDeployOptions().pause)
        for i, service in enumerate(ORDERS_FLEET):
            if i:
                time.sleep(pause)
            old = set(self.orders_workers(service))
            if not old:
                raise LabError(f"rolling-deploy: {service} runs no worker to replace")
            say(f"compose: {service} replaced (SIGHUP: its process manager starts a new "
                f"worker, then stops {sorted(old)} once it serves)")
            self.compose("kill", "-s", "SIGHUP", service)
            wait_until(partial(self._replaced, service, old),
                       f"{service}'s new worker to replace {sorted(old)} and serve (a process "
                       f"manager whose new worker was not ready in time keeps the old one: "
                       f"docker compose logs {service})",
                       max(self.ready_timeout, 90), interval=0.5)

    def _replaced(self, service: str, old: set[int]) -> bool:
        """None of the old workers is left, a new one is, and the replica serves."""
        try:
            workers = set(self.orders_workers(service))
        except ToolMissing:
            raise
        except LabError:
            return False
        return bool(workers) and not workers & old and get_ok(self.orders_health(service))

    def _lose_reader(self, say: Say) -> None:
        writer = self.writer()
        if writer is None:
            raise LabError("no PostgreSQL node is a writer: no reader to lose")
        replica = peer(writer)
        say(f"compose: {writer} stops waiting for a synchronous standby; kill {replica}; "
            f"the reader endpoint goes to {writer}")
        # first: a commit must never wait for the standby that is about to go
        self.psql(writer, "ALTER SYSTEM SET synchronous_standby_names = ''",
                  "SELECT pg_reload_conf()")
        self.compose("kill", replica)
        self.route(writer, writer)

    def _fail_over(self, say: Say) -> None:
        started = time.monotonic()
        unreachable = self.option(Fault.FAILOVER, "unreachable",
                                  FailoverOptions().unreachable)
        old = self.writer()
        if old is None:
            raise LabError("no PostgreSQL node is a writer: nothing to fail over")
        new = peer(old)
        say(f"compose: kill {old}; pgbouncer holds both endpoints (KILL) for {unreachable:g}s "
            f"while {new} is promoted; then both routed to {new} and resumed")
        self.compose("kill", old)
        self.pgbouncer_admin(*(f"KILL {endpoint}" for endpoint in ENDPOINTS))
        # The new writer has no replica yet: it must not wait for one to commit.
        self.psql(new, "SELECT pg_promote(true, 60)",
                  "ALTER SYSTEM SET synchronous_standby_names = ''", "SELECT pg_reload_conf()")
        time.sleep(max(0.0, started + unreachable - time.monotonic()))
        self.route(new, new)
        self._restore_target(say)

    def _failed_over(self, say: Say) -> None:
        """The failover's restore: the rejoin, and the endpoints resumed whatever happens (an
        inject stopped during the window leaves them held)."""
        try:
            self._rejoin(say)
        finally:
            self._restore_target(say)

    def _rejoin(self, say: Say) -> None:
        """Idempotent: from a failover or a reader loss, or one that failed half-way, or none
        at all, back to a writer with a streaming replica behind both endpoints."""
        writer = self.writer()
        if writer is None:  # the writer was killed but nothing was promoted: start it again
            say("compose: no writer; starting both nodes as they were")
            self.compose("up", "-d", "--no-deps", *NODES, timeout=300)
            wait_until(lambda: self.writer() is not None, "a PostgreSQL writer",
                       self.ready_timeout, interval=1)
            writer = self.writer()
            assert writer is not None
        replica = peer(writer)
        if not self._streaming(writer):
            say(f"compose: {replica} rejoins as a replica of {writer}")
            self.compose("up", "-d", "--no-deps", replica, timeout=300)
            wait_until(lambda: self._streaming(writer), f"{replica} to stream from {writer}",
                       max(self.ready_timeout, 180), interval=1)
        self.psql(writer, "ALTER SYSTEM SET synchronous_standby_names = '*'",
                  "SELECT pg_reload_conf()")
        self.route(writer, replica)

    # What the invariants read -------------------------------------------------------------

    def resources(self) -> ShopResources:
        sqs = client("sqs", self.moto_url)
        urls = [sqs.get_queue_url(QueueName=name)["QueueUrl"]
                for name in (f"{PREFIX}-orders", f"{PREFIX}-orders-dlq")]
        return ShopResources(urls[0], urls[1], f"{PREFIX}-catalog", f"{PREFIX}-order-status")

    async def queue_depths(self) -> tuple[int, int]:
        resources = await asyncio.to_thread(self.resources)
        return (await asyncio.to_thread(queue_depth, self.moto_url, resources.queue_url),
                await asyncio.to_thread(queue_depth, self.moto_url, resources.dlq_url))

    async def undecided_orders(self) -> int | None:
        resources = await asyncio.to_thread(self.resources)
        return await asyncio.to_thread(undecided_orders, self.moto_url, resources.status_table)

    async def _writer_dsn(self) -> str | None:
        """The published port of the node that is the writer now."""
        for node in NODES:
            dsn = f"postgresql://shop@127.0.0.1:{self.ports.node(node)}/shop"
            try:
                conn = await asyncpg.connect(dsn, password=self.password, timeout=3)
            except (TimeoutError, OSError, asyncpg.CannotConnectNowError):
                continue
            try:
                if not await conn.fetchval("SELECT pg_is_in_recovery()", timeout=3):
                    return dsn
            finally:
                await conn.close(timeout=3)
        return None

    async def _fetch(self, query: str, *args: object) -> list[asyncpg.Record] | None:
        dsn = await self._writer_dsn()
        if dsn is None:
            return None
        return await fetch_from(dsn, query, *args, password=self.password)


# Compose's fault registry: (inject, restore) for each fault of the catalog.
FAULTS: dict[Fault, tuple[Callable[[ComposeTarget, Say], None],
                          Callable[[ComposeTarget, Say], None]]] = {
    Fault.FAILOVER: (ComposeTarget._fail_over, ComposeTarget._failed_over),
    Fault.DB_OUTAGE: (ComposeTarget._lose_target, ComposeTarget._restore_target),
    Fault.BROWNOUT: (ComposeTarget._brownout, ComposeTarget._brownout_over),
    Fault.CREDENTIAL_ROTATION: (ComposeTarget._rotate_credentials,
                                ComposeTarget._publish_passwords),
    Fault.AWS_OUTAGE: (ComposeTarget._aws_outage, ComposeTarget._aws_back),
    Fault.WORKER_CRASH: (ComposeTarget._crash_worker, ComposeTarget._restart_worker),
    Fault.READER_LOSS: (ComposeTarget._lose_reader, ComposeTarget._rejoin),
    Fault.AWS_SLOW: (ComposeTarget._aws_slow, ComposeTarget._aws_on_time),
    Fault.FLEET_CRASH: (ComposeTarget._crash_fleet, ComposeTarget._fleet_back),
    Fault.ROLLING_DEPLOY: (ComposeTarget._rolling_deploy, ComposeTarget._fleet_serving),
    # the surge breaks nothing: the runner offers it against the entry, as on every target
    Fault.SURGE: (lambda target, say: None, lambda target, say: None),
    # the storm is the outage's; the surge at its restore is the runner's
    Fault.RECOVERY_STORM: (ComposeTarget._lose_target, ComposeTarget._restore_target),
}


def dotenv(path: Path) -> dict[str, str]:
    """``NAME=value`` lines of a compose .env file (comments, blank lines and ``export``
    skipped, one pair of surrounding quotes removed); empty when there is no file."""
    if not path.is_file():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.strip().removeprefix("export ").partition("=")
        if not sep or name.startswith("#"):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def _env_names(variables: dict[str, str]) -> list[str]:
    """``-e NAME`` for each: docker takes the value from its own environment."""
    return [arg for name in variables for arg in ("-e", name)]


def _each(*commands: str) -> list[str]:
    """PgBouncer admin commands for both endpoints, in the lab's order."""
    return [f"{command} {endpoint}" for endpoint in ENDPOINTS for command in commands]
