"""The compose target's faults, with no Docker engine: a fake ``docker`` (and ``psql``) on
PATH records every command and plays a small PostgreSQL pair (which node is the writer,
whether a replica streams), so the exact ``docker compose`` commands of each step are
asserted, and a failing command must surface as a LabError that says why."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from chaos_lab.local.lab import get_ok
from chaos_lab.model import (
    RESILIENT_SWITCHES,
    AwsSlowOptions,
    FailoverOptions,
    Fault,
    FleetCrashOptions,
    RollingDeployOptions,
    Switches,
)
from chaos_lab.processes import LabError, free_port
from chaos_lab.targets import compose as compose_target
from chaos_lab.targets.compose import ComposePorts, ComposeTarget

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ["docker", "compose", "-f", str(ROOT / "docker-compose.yml")]
ROUTE = "/etc/chaos-shop/pgbouncer/route.sh"
PSQL = ["psql", "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-XAtq"]

# Plays docker compose (and the host's psql) from a state file: the writer node, whether its
# replica streams, which nodes are stopped, each orders replica's uvicorn workers (its process
# manager starts a new one for one killed; on SIGHUP a new one, the old one gone once the next
# look finds both). FAKE_FAIL makes a command containing it fail.
FAKE = '''#!{python}
import json, os, sys, time
argv = [os.path.basename(sys.argv[0]), *sys.argv[1:]]
state_file = os.environ["FAKE_STATE"]
state = json.load(open(state_file))
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({{"argv": argv, "env": {{k: v for k, v in os.environ.items()
                          if k.startswith(("SHOP_", "PGPASSWORD", "POSTGRES_"))}}}}) + "\\n")
time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
line = " ".join(argv)
if os.environ.get("FAKE_FAIL") and os.environ["FAKE_FAIL"] in line:
    print("Error response from daemon: no such container", file=sys.stderr)
    sys.exit(1)
if argv[0] == "docker":
    args = argv[4:]  # after: compose -f FILE
    if args[0] == "exec":
        service = args[2]
        if service in state["stopped"]:
            print(f"service {{service!r}} is not running", file=sys.stderr)
            sys.exit(1)
        if "SELECT pg_is_in_recovery()" in args:
            print("f" if service == state["writer"] else "t")
        elif any("pg_stat_replication" in a for a in args):
            print(state["streaming"])
        elif "SELECT pg_promote(true, 60)" in args:
            state["writer"] = service
        elif service.startswith("orders-") and args[3:5] == ["python", "-c"]:
            workers = state["workers"][service]
            print(*workers)
            if args[6:] == ["1", "kill"]:
                state["killed"] += workers
                state["next_pid"] += 1
                state["workers"][service] = [state["next_pid"]]
            elif service in state["replacing"]:
                state["workers"][service] = workers[-1:]
                state["replacing"].remove(service)
    elif args[:3] == ["kill", "-s", "SIGHUP"] and args[3].startswith("orders-"):
        state["next_pid"] += 1
        state["workers"][args[3]].append(state["next_pid"])
        state["replacing"].append(args[3])
    elif args[0] == "kill" and "-s" not in args:
        state["stopped"].append(args[1])
        state["streaming"] = 0
    elif args[:3] == ["kill", "-s", "SIGKILL"]:
        state["stopped"].append(args[3])
    elif args[0] == "start":
        state["stopped"] = [s for s in state["stopped"] if s not in args[1:]]
    elif args[0] == "ps":
        if args[-1] not in state["stopped"]:
            print("0123456789ab")
    elif args[0] == "pause":
        state.setdefault("paused", []).append(args[1])
    elif args[0] == "unpause":
        if args[1] not in state.get("paused", []):
            print(f"Error response from daemon: Container {{args[1]}} is not paused",
                  file=sys.stderr)
            sys.exit(1)
        state["paused"].remove(args[1])
    elif args[:3] == ["up", "-d", "--no-deps"]:
        for node in args[3:]:
            if node in state["stopped"]:
                state["stopped"].remove(node)
        state["streaming"] = 1
json.dump(state, open(state_file, "w"))
'''


@pytest.fixture
def docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake docker and psql first on PATH; yields the log of what they were asked."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("docker", "psql"):
        fake = bin_dir / name
        fake.write_text(FAKE.format(python=sys.executable))
        fake.chmod(0o755)
    log, state = tmp_path / "calls.jsonl", tmp_path / "state.json"
    state.write_text(json.dumps({"writer": "postgres", "streaming": 1, "stopped": [],
                                 "workers": {"orders-1": [101], "orders-2": [201]},
                                 "killed": [], "replacing": [], "next_pid": 1000}))
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("FAKE_STATE", str(state))
    monkeypatch.setenv("POSTGRES_OWNER_PASSWORD", "0wner")
    monkeypatch.setenv("PGBOUNCER_ADMIN_PASSWORD", "s3cret")
    return log


def calls(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [json.loads(line)["argv"] for line in log.read_text().splitlines()]


def forget(log: Path) -> None:
    """Start the record afresh (what came before was asserted already)."""
    log.unlink(missing_ok=True)


def fake_state() -> dict[str, Any]:
    state: dict[str, Any] = json.loads(Path(os.environ["FAKE_STATE"]).read_text())
    return state


def played(**changes: Any) -> None:
    """Change what the fake plays."""
    Path(os.environ["FAKE_STATE"]).write_text(json.dumps({**fake_state(), **changes}))


def stopped(*services: str) -> None:
    """Tell the fake these services are stopped (its ``stop`` does not play that)."""
    played(stopped=list(services))


def envs(log: Path) -> list[dict[str, str]]:
    return [json.loads(line)["env"] for line in log.read_text().splitlines()]


class Shop(BaseHTTPRequestHandler):
    """The services' deep health and the entry once they are up: 200, except an order
    lookup (the orders service's own 404, JSON). While ``entry_gaps`` is above zero the entry
    answers nginx's 502 page instead, as it does until it resolves recreated containers."""

    entry_gaps = 0
    entry_requests = 0

    def do_GET(self) -> None:
        if self.path.startswith(("/products", "/orders")):
            type(self).entry_requests += 1
            if type(self).entry_gaps > 0:
                type(self).entry_gaps -= 1
                self._answer(502, "text/html", b"<html>502 Bad Gateway</html>")
                return
        if self.path.startswith("/orders/"):
            self._answer(404, "application/json", b'{"error": "order not found"}')
        else:
            self._answer(200, "application/json", b'{"status": "healthy"}')

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def healthy_port() -> Iterator[int]:
    Shop.entry_gaps = Shop.entry_requests = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Shop)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def shop_ports(port: int) -> ComposePorts:
    """The fake shop on one port: the entry, the catalog and each orders replica."""
    return ComposePorts(entry=port, catalog=port, orders=(port, port))


@pytest.fixture
def target(healthy_port: int) -> ComposeTarget:
    target = ComposeTarget(ROOT, ports=shop_ports(healthy_port), ready_timeout=5,
                           command_timeout=10)
    # no unreachable window (20 s by default) but where a test asks for one
    target.fault_options(Fault.FAILOVER, FailoverOptions(unreachable=0))
    return target


async def test_apply_recreates_the_services_with_the_settings(docker: Path,
                                                              target: ComposeTarget) -> None:
    await target.apply(RESILIENT_SWITCHES, lambda _: None)

    assert calls(docker) == [[*COMPOSE, "up", "-d", "--force-recreate", "catalog", "orders-1",
                              "orders-2", "order-worker"]]
    # the switches reach docker compose's environment, which the compose file interpolates
    assert {k: v for k, v in envs(docker)[0].items() if k.startswith("SHOP_")} == {
        "SHOP_ENABLE_PROXY": "true", "SHOP_ENABLE_DEGRADATION": "true"}


async def test_apply_without_degradation_runs_no_worker(docker: Path,
                                                        target: ComposeTarget) -> None:
    await target.apply(Switches(proxy=False, degradation=False), lambda _: None)

    assert calls(docker) == [
        [*COMPOSE, "up", "-d", "--force-recreate", "catalog", "orders-1", "orders-2"],
        [*COMPOSE, "stop", "order-worker"],
    ]
    shop_env = {k: v for k, v in envs(docker)[0].items() if k.startswith("SHOP_")}
    assert shop_env == {"SHOP_ENABLE_PROXY": "false", "SHOP_ENABLE_DEGRADATION": "false"}


async def test_apply_waits_until_the_shop_answers_through_the_entry(
        docker: Path, target: ComposeTarget) -> None:
    Shop.entry_gaps = 4  # nginx has not found the recreated containers yet
    said: list[str] = []

    await target.apply(RESILIENT_SWITCHES, said.append)

    assert Shop.entry_gaps == 0
    # past the gaps, both routes answered three rounds in a row
    assert Shop.entry_requests >= 4 + 6
    assert said[-1] == "compose: the shop answers through the entry"


async def test_apply_says_so_when_the_entry_never_answers(
        docker: Path, healthy_port: int) -> None:
    Shop.entry_gaps = 10**6
    target = ComposeTarget(ROOT, ports=shop_ports(healthy_port), ready_timeout=1.5)

    with pytest.raises(LabError, match="the shop through the entry"):
        await target.apply(RESILIENT_SWITCHES, lambda _: None)


async def test_failover_kills_the_writer_promotes_its_peer_and_repoints_pgbouncer(
        docker: Path, target: ComposeTarget) -> None:
    await target.inject("failover", 0, lambda _: None)

    assert calls(docker) == [
        [*COMPOSE, "exec", "-T", "postgres", *PSQL, "-c", "SELECT pg_is_in_recovery()"],
        [*COMPOSE, "kill", "postgres"],
        HOLD,
        [*COMPOSE, "exec", "-T", "postgres-replica", *PSQL,
         "-c", "SELECT pg_promote(true, 60)",
         "-c", "ALTER SYSTEM SET synchronous_standby_names = ''",
         "-c", "SELECT pg_reload_conf()"],
        [*COMPOSE, "exec", "-T", "pgbouncer", "sh", ROUTE, "postgres-replica", "postgres-replica"],
        [*COMPOSE, "kill", "-s", "SIGHUP", "pgbouncer"],
        TARGET_BACK,
    ]


async def test_failover_holds_writer_and_reader_unreachable_for_its_window(
        docker: Path, target: ComposeTarget) -> None:
    target.fault_options(Fault.FAILOVER, FailoverOptions(unreachable=1.5))
    timed: list[tuple[float, str]] = []
    started = time.monotonic()

    await target.inject("failover", 0, lambda line: timed.append((time.monotonic(), line)))

    took = time.monotonic() - started
    assert 1.5 <= took < 10, took  # the window, plus the fake commands on a busy machine
    # both endpoints held before the promotion; routed and resumed only after the window
    log = calls(docker)
    hold, route = log.index(HOLD), log.index(
        [*COMPOSE, "exec", "-T", "pgbouncer", "sh", ROUTE, "postgres-replica",
         "postgres-replica"])
    assert hold < log.index([*COMPOSE, "exec", "-T", "postgres-replica", *PSQL,
                             "-c", "SELECT pg_promote(true, 60)",
                             "-c", "ALTER SYSTEM SET synchronous_standby_names = ''",
                             "-c", "SELECT pg_reload_conf()"]) < route
    assert log[-1] == TARGET_BACK
    [(_, announced), (resumed_at, resumed)] = timed
    assert "holds both endpoints (KILL) for 1.5s" in announced
    assert "RESUME" in resumed and resumed_at - started >= 1.5


async def test_failover_without_options_holds_the_labs_default_window(
        docker: Path, healthy_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    target = ComposeTarget(ROOT, ports=shop_ports(healthy_port))
    slept: list[float] = []
    # the module's clock only: other threads (subprocess waits) keep the real sleep
    monkeypatch.setattr(compose_target, "time",
                        SimpleNamespace(monotonic=time.monotonic, sleep=slept.append))

    await target.inject("failover", 0, lambda _: None)

    assert len(slept) == 1 and 19 < slept[0] <= 20  # FailoverOptions' 20 s, less the steps


async def test_a_failover_stopped_during_its_window_is_resumed_by_the_restore(
        docker: Path, target: ComposeTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_FAIL", "pg_promote")
    with pytest.raises(LabError):
        await target.inject("failover", 0, lambda _: None)
    assert calls(docker)[-2] == HOLD  # held, then the promotion failed
    monkeypatch.delenv("FAKE_FAIL")
    monkeypatch.setenv("FAKE_FAIL", "up -d --no-deps")  # and the rejoin fails too
    forget(docker)

    with pytest.raises(LabError):
        await target.restore("failover", lambda _: None)

    assert calls(docker)[-1] == TARGET_BACK


async def test_restore_after_failover_rejoins_the_old_writer_as_replica(
        docker: Path, target: ComposeTarget) -> None:
    await target.inject("failover", 0, lambda _: None)
    forget(docker)

    await target.restore("failover", lambda _: None)

    streaming = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
    assert calls(docker) == [
        # the killed node does not answer; the promoted one is the writer
        [*COMPOSE, "exec", "-T", "postgres", *PSQL, "-c", "SELECT pg_is_in_recovery()"],
        [*COMPOSE, "exec", "-T", "postgres-replica", *PSQL, "-c", "SELECT pg_is_in_recovery()"],
        [*COMPOSE, "exec", "-T", "postgres-replica", *PSQL, "-c", streaming],
        [*COMPOSE, "up", "-d", "--no-deps", "postgres"],
        [*COMPOSE, "exec", "-T", "postgres-replica", *PSQL, "-c", streaming],
        [*COMPOSE, "exec", "-T", "postgres-replica", *PSQL,
         "-c", "ALTER SYSTEM SET synchronous_standby_names = '*'",
         "-c", "SELECT pg_reload_conf()"],
        [*COMPOSE, "exec", "-T", "pgbouncer", "sh", ROUTE, "postgres-replica", "postgres"],
        [*COMPOSE, "kill", "-s", "SIGHUP", "pgbouncer"],
        TARGET_BACK,
    ]

    # a second failover goes the other way
    forget(docker)
    await target.inject("failover", 0, lambda _: None)
    assert [*COMPOSE, "kill", "postgres-replica"] in calls(docker)
    assert [*COMPOSE, "exec", "-T", "pgbouncer", "sh", ROUTE, "postgres", "postgres"] \
        in calls(docker)


async def test_restore_without_a_fault_only_reasserts_the_routes(docker: Path,
                                                                 target: ComposeTarget) -> None:
    await target.restore("failover", lambda _: None)

    assert [c[4:] for c in calls(docker) if c[4] in ("up", "kill")] == [
        ["kill", "-s", "SIGHUP", "pgbouncer"]]
    assert [*COMPOSE, "exec", "-T", "pgbouncer", "sh", ROUTE, "postgres", "postgres-replica"] \
        in calls(docker)


async def test_db_outage_disables_and_restores_pgbouncer_endpoints(docker: Path,
                                                                   target: ComposeTarget) -> None:
    admin = ["psql", "-h", "127.0.0.1", "-p", "6432", "-U", "pgbouncer", "-d", "pgbouncer"]

    await target.inject("db-outage", 10, lambda _: None)
    await target.restore("db-outage", lambda _: None)

    assert calls(docker) == [
        [*admin, "-v", "ON_ERROR_STOP=1", "-XAtq", "-c", "DISABLE shop", "-c", "KILL shop",
         "-c", "DISABLE shop_reader", "-c", "KILL shop_reader"],
        [*admin, "-XAtq", "-c", "RESUME shop", "-c", "ENABLE shop",
         "-c", "RESUME shop_reader", "-c", "ENABLE shop_reader"],
    ]
    # PgBouncer's admin console's own password, in the environment
    assert all(env["PGPASSWORD"] == "s3cret" for env in envs(docker))


ADMIN = ["psql", "-h", "127.0.0.1", "-p", "6432", "-U", "pgbouncer", "-d", "pgbouncer"]
LOSE_TARGET = [*ADMIN, "-v", "ON_ERROR_STOP=1", "-XAtq", "-c", "DISABLE shop", "-c",
               "KILL shop", "-c", "DISABLE shop_reader", "-c", "KILL shop_reader"]
TARGET_BACK = [*ADMIN, "-XAtq", "-c", "RESUME shop", "-c", "ENABLE shop",
               "-c", "RESUME shop_reader", "-c", "ENABLE shop_reader"]
HOLD = [*ADMIN, "-v", "ON_ERROR_STOP=1", "-XAtq", "-c", "KILL shop", "-c", "KILL shop_reader"]
IS_WRITER = ["-c", "SELECT pg_is_in_recovery()"]
STREAMING = ["-c", "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"]


async def test_brownout_sets_and_clears_the_latency_proxys_delay(
        docker: Path, target: ComposeTarget) -> None:
    delay = [*COMPOSE, "exec", "-T", "latency-proxy", "python",
             "/opt/chaos-shop/latency_proxy.py", "set"]

    await target.inject("brownout", 10, lambda _: None)  # the lab's default: 3 s
    target.fault_options("brownout", SimpleNamespace(delay=1.5))  # type: ignore[arg-type]
    await target.inject("brownout", 10, lambda _: None)
    await target.restore("brownout", lambda _: None)
    await target.restore("brownout", lambda _: None)

    assert calls(docker) == [[*delay, "3"], [*delay, "1.5"], [*delay, "0"], [*delay, "0"]]


async def test_credential_rotation_changes_the_database_first_then_the_sources(
        docker: Path, target: ComposeTarget) -> None:
    target.fault_options("credential-rotation",
                         SimpleNamespace(gap=0.3))  # type: ignore[arg-type]
    started = time.monotonic()

    await target.inject("credential-rotation", 0, lambda _: None)

    assert time.monotonic() - started >= 0.3  # the gap: the sources lag the database
    variables = ["-e", "POSTGRES_ORDERS_PASSWORD", "-e", "POSTGRES_CATALOG_PASSWORD"]
    assert calls(docker) == [
        [*COMPOSE, "exec", "-T", "postgres", *PSQL, *IS_WRITER],
        [*COMPOSE, "exec", "-T", *variables, "postgres", "bash",
         "/etc/chaos-shop/postgres/set-passwords.sh"],
        [*COMPOSE, "run", "--rm", "--no-deps", "-T", "secrets", "--rotate"],
        [*COMPOSE, "exec", "-T", "pgbouncer", "sh", "/etc/chaos-shop/pgbouncer/userlist.sh"],
        [*COMPOSE, "kill", "-s", "SIGHUP", "pgbouncer"],
    ]
    # the new passwords travel in the environment, never on a command line, and the
    # database and the password files get the same new ones
    seen = envs(docker)
    new = {k: seen[1][k] for k in ("POSTGRES_ORDERS_PASSWORD", "POSTGRES_CATALOG_PASSWORD")}
    assert len(set(new.values())) == 2 and "s3cret" not in new.values()
    assert {k: seen[2][k] for k in new} == new
    assert not any(value in arg for value in new.values() for c in calls(docker) for arg in c)

    # the rotation completed: the restore has nothing left to do, however often it runs
    forget(docker)
    await target.restore("credential-rotation", lambda _: None)
    await target.restore("credential-rotation", lambda _: None)
    assert calls(docker) == []


async def test_credential_rotation_interrupted_is_completed_by_the_restore(
        docker: Path, target: ComposeTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    target.fault_options("credential-rotation", SimpleNamespace(gap=0))  # type: ignore[arg-type]
    monkeypatch.setenv("FAKE_FAIL", "secrets --rotate")
    with pytest.raises(LabError, match="secrets --rotate"):
        await target.inject("credential-rotation", 0, lambda _: None)
    monkeypatch.delenv("FAKE_FAIL")
    forget(docker)

    await target.restore("credential-rotation", lambda _: None)
    await target.restore("credential-rotation", lambda _: None)

    assert [c[4:] for c in calls(docker)] == [
        ["run", "--rm", "--no-deps", "-T", "secrets", "--rotate"],
        ["exec", "-T", "pgbouncer", "sh", "/etc/chaos-shop/pgbouncer/userlist.sh"],
        ["kill", "-s", "SIGHUP", "pgbouncer"],
    ]


async def test_aws_outage_freezes_moto_while_the_database_is_out(
        docker: Path, target: ComposeTarget) -> None:
    await target.inject("aws-outage", 8, lambda _: None)
    assert calls(docker) == [LOSE_TARGET, [*COMPOSE, "pause", "moto"]]
    forget(docker)

    await target.restore("aws-outage", lambda _: None)
    assert calls(docker) == [[*COMPOSE, "unpause", "moto"], TARGET_BACK]

    # restoring again (or what was never injected): moto is not paused, no error
    forget(docker)
    await target.restore("aws-outage", lambda _: None)
    assert calls(docker) == [[*COMPOSE, "unpause", "moto"], TARGET_BACK]


async def test_worker_crash_kills_the_worker_after_queuing_then_starts_it(
        docker: Path, target: ComposeTarget) -> None:
    target.fault_options("worker-crash", SimpleNamespace(outage=0.3))  # type: ignore[arg-type]
    started = time.monotonic()

    await target.inject("worker-crash", 10, lambda _: None)

    assert time.monotonic() - started >= 0.3  # the outage queued orders first
    assert calls(docker) == [
        LOSE_TARGET,
        [*COMPOSE, "ps", "-q", "--status", "running", "order-worker"],
        [*COMPOSE, "kill", "-s", "SIGKILL", "order-worker"],
        TARGET_BACK,
    ]
    forget(docker)

    await target.restore("worker-crash", lambda _: None)
    assert calls(docker) == [TARGET_BACK, [*COMPOSE, "start", "order-worker"]]

    forget(docker)  # idempotent: the worker runs again, nothing more to start
    await target.restore("worker-crash", lambda _: None)
    assert calls(docker) == [TARGET_BACK]


async def test_worker_crash_without_a_running_worker_kills_nothing(
        docker: Path, target: ComposeTarget) -> None:
    await target.apply(Switches(proxy=True, degradation=False), lambda _: None)
    target.fault_options("worker-crash", SimpleNamespace(outage=0))  # type: ignore[arg-type]
    stopped("order-worker")  # as the fragile settings leave it
    forget(docker)

    await target.inject("worker-crash", 10, lambda _: None)
    await target.restore("worker-crash", lambda _: None)

    assert [c for c in calls(docker) if "order-worker" in c and c[4] != "ps"] == []


async def test_reader_loss_relaxes_sync_kills_the_replica_and_routes_reads_to_the_writer(
        docker: Path, target: ComposeTarget) -> None:
    await target.inject("reader-loss", 8, lambda _: None)

    assert calls(docker) == [
        [*COMPOSE, "exec", "-T", "postgres", *PSQL, *IS_WRITER],
        # first: commits stop waiting for the standby about to go
        [*COMPOSE, "exec", "-T", "postgres", *PSQL,
         "-c", "ALTER SYSTEM SET synchronous_standby_names = ''",
         "-c", "SELECT pg_reload_conf()"],
        [*COMPOSE, "kill", "postgres-replica"],
        [*COMPOSE, "exec", "-T", "pgbouncer", "sh", ROUTE, "postgres", "postgres"],
        [*COMPOSE, "kill", "-s", "SIGHUP", "pgbouncer"],
    ]
    forget(docker)

    await target.restore("reader-loss", lambda _: None)

    assert calls(docker) == [
        [*COMPOSE, "exec", "-T", "postgres", *PSQL, *IS_WRITER],
        [*COMPOSE, "exec", "-T", "postgres", *PSQL, *STREAMING],
        [*COMPOSE, "up", "-d", "--no-deps", "postgres-replica"],
        [*COMPOSE, "exec", "-T", "postgres", *PSQL, *STREAMING],
        [*COMPOSE, "exec", "-T", "postgres", *PSQL,
         "-c", "ALTER SYSTEM SET synchronous_standby_names = '*'",
         "-c", "SELECT pg_reload_conf()"],
        [*COMPOSE, "exec", "-T", "pgbouncer", "sh", ROUTE, "postgres", "postgres-replica"],
        [*COMPOSE, "kill", "-s", "SIGHUP", "pgbouncer"],
    ]
    forget(docker)

    # again: the replica streams already, only synchronous commits and the routes reasserted
    await target.restore("reader-loss", lambda _: None)
    assert [c[4:6] for c in calls(docker) if c[4] in ("up", "kill")] == [["kill", "-s"]]


async def test_reader_loss_follows_the_roles_after_a_failover(
        docker: Path, target: ComposeTarget) -> None:
    await target.inject("failover", 0, lambda _: None)
    await target.restore("failover", lambda _: None)
    forget(docker)

    await target.inject("reader-loss", 8, lambda _: None)

    assert [*COMPOSE, "kill", "postgres"] in calls(docker)  # the replica now
    assert [*COMPOSE, "exec", "-T", "pgbouncer", "sh", ROUTE, "postgres-replica",
            "postgres-replica"] in calls(docker)


SQS_DELAY = [*COMPOSE, "exec", "-T", "sqs-proxy", "python", "/opt/chaos-shop/latency_proxy.py",
             "set"]


def workers(replica: str, *kill: str) -> list[str]:
    """The look at (or the kill of) an orders replica's uvicorn workers, in its container."""
    return [*COMPOSE, "exec", "-T", replica, "python", "-c", compose_target.ORDERS_WORKERS, "1",
            *kill]


def running(service: str) -> list[str]:
    return [*COMPOSE, "ps", "-q", "--status", "running", service]


async def test_aws_slow_delays_every_sqs_answer_while_the_database_is_out(
        docker: Path, target: ComposeTarget) -> None:
    await target.inject("aws-slow", 10, lambda _: None)  # the lab's default: 1 s
    target.fault_options(Fault.AWS_SLOW, AwsSlowOptions(delay=2.5))
    await target.inject("aws-slow", 10, lambda _: None)

    assert calls(docker) == [LOSE_TARGET, [*SQS_DELAY, "1"], LOSE_TARGET, [*SQS_DELAY, "2.5"]]
    forget(docker)

    await target.restore("aws-slow", lambda _: None)
    await target.restore("aws-slow", lambda _: None)  # again, or with nothing injected

    assert calls(docker) == [[*SQS_DELAY, "0"], TARGET_BACK] * 2


async def test_aws_slow_gives_the_database_back_even_when_the_sqs_proxy_does_not_answer(
        docker: Path, target: ComposeTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_FAIL", "sqs-proxy")

    with pytest.raises(LabError, match="sqs-proxy"):
        await target.restore("aws-slow", lambda _: None)

    assert calls(docker) == [[*SQS_DELAY, "0"], TARGET_BACK]


async def test_fleet_crash_kills_every_replicas_worker_during_a_database_outage(
        docker: Path, target: ComposeTarget) -> None:
    target.fault_options(Fault.FLEET_CRASH, FleetCrashOptions(kill_after=0.3))
    said: list[str] = []
    started = time.monotonic()

    await target.inject("fleet-crash", 10, said.append)

    assert time.monotonic() - started >= 0.3  # orders were taken in first
    assert calls(docker) == [LOSE_TARGET, workers("orders-1", "kill"),
                             workers("orders-2", "kill")]
    assert fake_state()["killed"] == [101, 201]  # each process manager started a new one
    assert "orders-1's worker [101], orders-2's worker [201]" in said[-1]
    forget(docker)

    await target.restore("fleet-crash", lambda _: None)
    # the database back, then each replica serving (its deep health answered)
    assert calls(docker) == [TARGET_BACK, running("orders-1"), running("orders-2")]

    forget(docker)  # a replica whose container went is started again
    stopped("orders-2")
    await target.restore("fleet-crash", lambda _: None)
    assert calls(docker) == [TARGET_BACK, running("orders-1"), running("orders-2"),
                             [*COMPOSE, "start", "orders-2"]]


async def test_fleet_crash_without_a_worker_to_kill_says_so(
        docker: Path, target: ComposeTarget) -> None:
    target.fault_options(Fault.FLEET_CRASH, FleetCrashOptions(kill_after=0))
    played(workers={"orders-1": [], "orders-2": []})

    with pytest.raises(LabError, match="no orders worker process found to kill"):
        await target.inject("fleet-crash", 10, lambda _: None)
    await target.restore("fleet-crash", lambda _: None)

    assert calls(docker)[-3:] == [TARGET_BACK, running("orders-1"), running("orders-2")]


async def test_the_fleets_restore_waits_until_each_replica_serves(
        docker: Path, healthy_port: int) -> None:
    silent = free_port()  # orders-2 does not answer
    target = ComposeTarget(ROOT, ports=ComposePorts(entry=healthy_port, catalog=healthy_port,
                                                    orders=(healthy_port, silent)),
                           ready_timeout=1)

    with pytest.raises(LabError, match=f"orders-2 to serve .*:{silent}/health/deep"):
        await target.restore("rolling-deploy", lambda _: None)


async def test_rolling_deploy_replaces_each_replicas_worker_in_turn(
        docker: Path, target: ComposeTarget) -> None:
    target.fault_options(Fault.ROLLING_DEPLOY, RollingDeployOptions(pause=0.3))
    timed: list[tuple[float, str]] = []

    await target.inject("rolling-deploy", 0, lambda line: timed.append((time.monotonic(), line)))

    sighup = [*COMPOSE, "kill", "-s", "SIGHUP"]
    # each: its workers, SIGHUP to its process manager, then looked at until the old worker
    # is gone and a new one serves (the fake's first look finds both)
    assert calls(docker) == [
        workers("orders-1"), [*sighup, "orders-1"], workers("orders-1"), workers("orders-1"),
        workers("orders-2"), [*sighup, "orders-2"], workers("orders-2"), workers("orders-2"),
    ]
    assert fake_state()["workers"] == {"orders-1": [1001], "orders-2": [1002]}
    assert fake_state()["killed"] == []  # replaced, never killed
    [(first_at, first), (second_at, second)] = timed
    assert "orders-1 replaced" in first and "[101]" in first
    assert "orders-2 replaced" in second and second_at - first_at >= 0.3  # the pause
    forget(docker)

    await target.restore("rolling-deploy", lambda _: None)
    assert calls(docker) == [running("orders-1"), running("orders-2")]


async def test_rolling_deploy_of_a_replica_without_a_worker_is_refused(
        docker: Path, target: ComposeTarget) -> None:
    played(workers={"orders-1": [], "orders-2": [201]})

    with pytest.raises(LabError, match="orders-1 runs no worker to replace"):
        await target.inject("rolling-deploy", 0, lambda _: None)

    assert calls(docker) == [workers("orders-1")]  # no SIGHUP


TINY_APP = """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""


def test_the_worker_look_finds_kills_and_sees_replaced_a_real_process_managers_worker(
        tmp_path: Path) -> None:
    """What fleet-crash and rolling-deploy run in an orders container, against a real
    ``python -m shop.serve`` (the image's command), here with its pid for PID 1: the look finds
    its one worker; the kill takes it and the manager starts another on the same socket;
    SIGHUP replaces it; SIGTERM stops all."""
    (tmp_path / "tiny.py").write_text(TINY_APP)
    port = free_port()
    manager = subprocess.Popen(
        [sys.executable, "-m", "shop.serve", "tiny:app", "--port", str(port),
         "--timeout-graceful-shutdown", "2"], cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def look(*kill: str) -> list[int]:
        found = subprocess.run([sys.executable, "-c", compose_target.ORDERS_WORKERS,
                                str(manager.pid), *kill], capture_output=True, text=True,
                               check=True, timeout=10).stdout
        return [int(pid) for pid in found.split()]

    def serving_one_worker_but(old: list[int]) -> list[int] | None:
        now = look()
        if len(now) == 1 and not set(now) & set(old) and get_ok(f"http://127.0.0.1:{port}/"):
            return now
        return None

    def until_one_worker_but(old: list[int]) -> list[int]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if found := serving_one_worker_but(old):
                return found
            time.sleep(0.1)
        raise AssertionError(f"no new worker serves in place of {old}")

    try:
        first = until_one_worker_but([])
        assert look("kill") == first  # the one it killed
        restarted = until_one_worker_but(first)
        manager.send_signal(signal.SIGHUP)
        until_one_worker_but(restarted)
        assert manager.poll() is None  # the manager itself never went
        manager.send_signal(signal.SIGTERM)
        assert manager.wait(timeout=20) == 0
    finally:
        if manager.poll() is None:
            manager.kill()
            manager.wait()


async def test_a_failing_docker_is_a_lab_error_with_its_stderr(
        docker: Path, target: ComposeTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_FAIL", "kill postgres")

    with pytest.raises(LabError) as error:
        await target.inject("failover", 0, lambda _: None)

    message = str(error.value)
    assert "compose -f" in message and "kill postgres" in message and "failed (1)" in message
    assert "Error response from daemon: no such container" in message


async def test_a_hanging_docker_is_a_lab_error(docker: Path, healthy_port: int,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SLEEP", "5")
    target = ComposeTarget(ROOT, ports=shop_ports(healthy_port), command_timeout=0.5)

    with pytest.raises(LabError, match="did not finish within"):
        await target.restore("db-outage", lambda _: None)


async def test_no_docker_or_no_password_is_a_clear_lab_error(
        docker: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(LabError, match="not found"):
        await ComposeTarget(ROOT, docker="/nonexistent/docker").inject("failover", 0, print)

    # a project without a .env, and nothing in the environment
    monkeypatch.delenv("PGBOUNCER_ADMIN_PASSWORD")
    bare = ComposeTarget(tmp_path, compose_file=str(ROOT / "docker-compose.yml"))
    with pytest.raises(LabError, match="PGBOUNCER_ADMIN_PASSWORD is not set"):
        await bare.inject("db-outage", 0, print)
    monkeypatch.delenv("POSTGRES_OWNER_PASSWORD")
    with pytest.raises(LabError, match="POSTGRES_OWNER_PASSWORD is not set"):
        assert bare.password


def test_the_passwords_come_from_the_environment_else_the_projects_env_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As compose reads them: the environment wins over .env."""
    for name in ("POSTGRES_OWNER_PASSWORD", "PGBOUNCER_ADMIN_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / ".env").write_text("# the stack's passwords\nPOSTGRES_OWNER_PASSWORD='o w'\n"
                                   "export PGBOUNCER_ADMIN_PASSWORD=adm=in\nEMPTY=\n")
    target = ComposeTarget(tmp_path)
    assert (target.password, target.admin_password) == ("o w", "adm=in")
    monkeypatch.setenv("PGBOUNCER_ADMIN_PASSWORD", "from-env")
    assert target.admin_password == "from-env"
    assert compose_target.dotenv(tmp_path / "none") == {}


async def test_unknown_fault_is_refused(docker: Path, target: ComposeTarget) -> None:
    with pytest.raises(LabError, match="unknown fault"):
        await target.inject("meteor", 0, lambda _: None)
    with pytest.raises(LabError, match="unknown fault"):
        await target.restore("meteor", lambda _: None)


def test_it_points_where_docker_compose_publishes() -> None:
    default = ComposeTarget(ROOT)
    assert default.entry_url == "http://127.0.0.1:8080"
    assert default.health_urls == ["http://127.0.0.1:8080/products",
                                   "http://127.0.0.1:8001/health/deep",
                                   "http://127.0.0.1:8002/health/deep",
                                   "http://127.0.0.1:8003/health/deep"]
    # each breaker watched where it lives: the catalog and each orders replica
    assert default.breaker_urls == {"catalog": "http://127.0.0.1:8001/health/deep",
                                    "orders-1": "http://127.0.0.1:8002/health/deep",
                                    "orders-2": "http://127.0.0.1:8003/health/deep"}
