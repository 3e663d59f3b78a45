"""The whole shop as local processes: the lab's topology.

PostgreSQL primary + streaming replica, PgBouncer as the RDS Proxy twin (writer and reader
endpoints), moto's server as DynamoDB + SQS, the catalog, orders and order-worker processes,
and nginx in front as the ALB. Everything lives under one lab directory (logs included) and is
described by ``state.json`` there, so ``lab down`` and ``lab status`` work from another shell.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from chaos_lab.local.aws import MotoServer, ShopResources, create_resources, purge, queue_depth
from chaos_lab.local.latency_proxy import write_delay
from chaos_lab.local.pgbouncer import READER_DB, WRITER_DB, PgBouncer
from chaos_lab.local.postgres import APP_USERS, CATALOG_USER, ORDERS_USER, ROLES, USER, PostgresNode
from chaos_lab.model import RESILIENT_SWITCHES, Switches
from chaos_lab.processes import (
    LabError,
    children,
    free_port,
    give_to_service_user,
    port_open,
    run,
    spawn,
    wait_until,
    write_secret,
)
from shop.db import reset_catalog

DEFAULT_DIR = Path(".lab")
# The orders service runs as a fleet behind nginx, as behind the ALB: every experiment tests
# replicas. Each runs under uvicorn's process manager with one worker (shop.serve): the
# manager holds the listening socket and starts a new worker when one dies.
ORDERS_FLEET = ("orders-1", "orders-2")
SERVICES = ("catalog", *ORDERS_FLEET, "worker")
ENTRY_ORDERS_CEILING = 128  # orders in flight through the entry at once (nginx limit_conn)

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log warn;
events {{ worker_connections 16384; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    keepalive_requests 100000;
    # Connections to the services are kept and reused: opening one per request under a
    # surge costs the services more than the requests do.
    upstream catalog {{
        server 127.0.0.1:{catalog} max_fails=0; keepalive 256; keepalive_requests 100000;
    }}
    upstream orders {{ {orders} keepalive 256; keepalive_requests 100000; }}
    # The entry's ceiling on orders in flight at once (the orders processes' adaptive limits
    # decide under it): past it, 503 + Retry-After here, for the cost of a refusal in C.
    limit_conn_zone $server_name zone=orders:1m;
    server {{
        # a surge opens connections by the thousand: with Linux's default backlog (511) the
        # kernel drops their SYNs and each client waits out a retransmission (1 s, then 3 s)
        listen 127.0.0.1:{port} backlog=4096;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header X-Request-Start "t=${{msec}}";
        proxy_connect_timeout 2s;
        proxy_read_timeout 10s;
        location /products {{ proxy_pass http://catalog; }}
        location /orders {{
            limit_conn orders {orders_ceiling};
            limit_conn_status 503;
            proxy_pass http://orders;
        }}
        error_page 503 @overloaded;
        location @overloaded {{
            default_type application/json;
            add_header Retry-After 1 always;
            return 503 '{{"error":"overloaded, try again shortly"}}';
        }}
        location = /health {{ return 200 '{{"status":"ok","service":"entry"}}'; }}
    }}
}}
"""



@dataclass
class LabState:
    """What ``lab up`` made, saved so that another command can find it."""

    ports: dict[str, int]
    primary: str = "node-a"  # which node is the writer now (a failover swaps them)
    pids: dict[str, int] = field(default_factory=dict)
    resources: dict[str, str] = field(default_factory=dict)
    service_settings: dict[str, str] = field(default_factory=RESILIENT_SWITCHES.env)


class Lab:
    def __init__(self, root: Path = DEFAULT_DIR) -> None:
        self.root = root.resolve()
        self.state_file = self.root / "state.json"
        self.state: LabState | None = None
        if self.state_file.exists():
            self.state = LabState(**json.loads(self.state_file.read_text()))

    # Topology -------------------------------------------------------------------------------

    @property
    def s(self) -> LabState:
        if self.state is None:
            raise LabError(f"the lab is not up (no {self.state_file}); run `chaos-shop lab up`")
        return self.state

    def node(self, name: str) -> PostgresNode:
        return PostgresNode(name, self.root / name, self.s.ports[name])

    @property
    def primary(self) -> PostgresNode:
        return self.node(self.s.primary)

    @property
    def replica(self) -> PostgresNode:
        return self.node("node-b" if self.s.primary == "node-a" else "node-a")

    @property
    def bouncer(self) -> PgBouncer:
        return PgBouncer(self.root / "pgbouncer", self.s.ports["pgbouncer"],
                         self.primary.port, self.replica.port, self.passwords())

    # The roles' passwords: one file per role (0600, in a folder only the lab's user may
    # enter), the services' source (SHOP_DATABASE_PASSWORD_FILE) as a Secrets Manager secret
    # is on AWS, and the nodes' and PgBouncer's (chaos_lab.local.postgres, .pgbouncer), whose
    # admin console's password is there too.

    def password_file(self, role: str) -> Path:
        return self.root / "secrets" / f"{role}.password"

    def passwords(self) -> dict[str, str]:
        """The app roles' passwords, as their files have them now."""
        return {role: self.password_file(role).read_text().strip() for role in APP_USERS
                if self.password_file(role).exists()}

    def write_passwords(self, passwords: dict[str, str]) -> None:
        for role, password in passwords.items():
            write_secret(self.password_file(role), password + "\n")

    # The latency proxy between the services and PgBouncer (the brownout's).

    @property
    def latency_control(self) -> Path:
        return self.root / "latency-proxy.delay"

    @property
    def aws_latency_control(self) -> Path:
        """The second latency proxy's, between the services and the order queue (aws-slow)."""
        return self.root / "aws-proxy.delay"

    def _start_latency_proxy(self, name: str, control: Path, upstream: int) -> None:
        write_delay(control, 0)
        port = self.s.ports[name]
        proc = spawn([sys.executable, "-m", "chaos_lab.local.latency_proxy", "--control",
                      str(control), "serve", "--listen", f"127.0.0.1:{port}",
                      "--upstream", f"127.0.0.1:{upstream}"], self.root / "logs" / f"{name}.log")
        self.s.pids[name] = proc.pid
        wait_until(lambda: port_open(port), f"the {name} on port {port}")

    @property
    def moto(self) -> MotoServer:
        return MotoServer(self.s.ports["moto"], self.root / "logs" / "moto.log")

    @property
    def resources(self) -> ShopResources:
        return ShopResources(**self.s.resources)

    @property
    def entry_url(self) -> str:
        return f"http://127.0.0.1:{self.s.ports['entry']}"

    def service_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.s.ports[name]}"

    def save(self) -> None:
        self.state_file.write_text(json.dumps(asdict(self.s), indent=2))

    def is_up(self) -> bool:
        return self.state is not None and port_open(self.s.ports["entry"])

    def up(self, log: Any = print) -> None:
        """Start everything, waiting for each part to be ready before the next."""
        if self.is_up():
            log(f"lab already up at {self.entry_url}")
            return
        if self.state is not None:
            self.down(log=lambda *_: None)
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        give_to_service_user(self.root)
        names = ["node-a", "node-b", "pgbouncer", "latency-proxy", "moto", "aws-proxy",
                 "catalog", *ORDERS_FLEET, "worker", "entry"]
        self.state = LabState(ports={name: free_port() for name in names})
        self.save()
        log("postgres: primary node-a (every role with its own random password, SCRAM)")
        self.write_passwords({role: secrets.token_urlsafe(16) for role in ROLES})
        write_secret(self.bouncer.admin_password_file, secrets.token_urlsafe(16))
        self.node("node-a").init_primary()
        log("postgres: streaming replica node-b")
        self.node("node-b").init_replica(self.node("node-a"))
        log("pgbouncer: writer and reader endpoints")
        self.bouncer.start(self.primary.port, self.replica.port)
        log("latency proxy: between the services and pgbouncer (transparent)")
        self._start_latency_proxy("latency-proxy", self.latency_control,
                                  self.s.ports["pgbouncer"])
        log("moto: DynamoDB + SQS, queue + DLQ + tables")
        moto = self.moto
        moto.start()
        self.s.pids["moto"] = moto.pid
        self.s.resources = asdict(create_resources(moto.url))
        log("latency proxy: between the services and SQS (transparent)")
        self._start_latency_proxy("aws-proxy", self.aws_latency_control, moto.port)
        self.save()
        self.start_services(self.s.service_settings, log=log)
        log("nginx: the entry point")
        self._start_nginx()
        self.save()
        log(f"lab up: {self.entry_url}  (logs in {self.root / 'logs'})")

    def service_env(self, settings: dict[str, str], user: str = ORDERS_USER) -> dict[str, str]:
        """A service's environment: its own database role (least privilege; the schema is
        the migrate step's) and its password file, through the latency proxy to PgBouncer, the
        lab's resources, then ``settings``."""
        via = f"postgresql://{user}@127.0.0.1:{self.s.ports['latency-proxy']}"
        return {
            "SHOP_DATABASE_URL": f"{via}/{WRITER_DB}",
            "SHOP_DATABASE_READER_URL": f"{via}/{READER_DB}",
            "SHOP_DATABASE_PASSWORD_FILE": str(self.password_file(user)),
            "SHOP_MIGRATE": "false",
            "SHOP_WORKER_HEALTH_PORT": str(self.s.ports["worker"]),
            "SHOP_WORKER_WAIT_SECONDS": "2",
            "SHOP_BREAKER_PROBE_SECONDS": "1",
            # An experiment waits for the drain: orders whose wake-up was lost are swept
            # sooner than in production (30 s, every 5 s).
            "SHOP_WORKER_SWEEP_SECONDS": "2",
            "SHOP_WORKER_SWEEP_AFTER_SECONDS": "10",
            **self.resources.settings(self.moto.url),
            "AWS_ENDPOINT_URL_SQS": f"http://127.0.0.1:{self.s.ports['aws-proxy']}",
            **settings,
        }

    def start_services(self, settings: dict[str, str], log: Any = print) -> None:
        """(Re)start the catalog, the orders fleet and the worker with these SHOP_* settings."""
        self.stop_services()
        self.s.service_settings = dict(settings)
        self.migrate()
        log(f"catalog: uvicorn on port {self.s.ports['catalog']} as {CATALOG_USER} "
            f"({_switches(settings)})")
        self._start_uvicorn("catalog", "catalog.main:app", CATALOG_USER)
        for name in ORDERS_FLEET:
            log(f"{name}: uvicorn (process manager, one worker) on port {self.s.ports[name]} "
                f"as {ORDERS_USER} ({_switches(settings)})")
            self.start_orders(name)
        if Switches.from_env(settings).degradation:
            log("order-worker")
            self.start_worker()
        self.save()
        for name in ("catalog", *ORDERS_FLEET):
            self.wait_ready(name)

    def _start_uvicorn(self, name: str, app: str, user: str, *server: str) -> None:
        server = server or ("-m", "uvicorn", "--no-access-log")
        proc = spawn([sys.executable, *server, app, "--host", "127.0.0.1", "--port",
                      str(self.s.ports[name])], self.root / "logs" / f"{name}.log",
                     env=self.service_env(self.s.service_settings, user))
        self.s.pids[name] = proc.pid

    def start_orders(self, name: str) -> None:
        """One orders process of the fleet, under uvicorn's process manager (shop.serve)."""
        self._start_uvicorn(name, "orders.main:app", ORDERS_USER, "-m", "shop.serve")
        self.save()

    def wait_ready(self, name: str, timeout: float = 60) -> None:
        """Ready means the schema is in place: the first deep health check that passes."""
        url = f"{self.service_url(name)}/health/deep"
        wait_until(partial(get_ok, url), f"{name} to reach its database", timeout=timeout)

    def orders_workers(self, name: str) -> list[int]:
        """The worker processes under one orders process manager (the ones that serve)."""
        return children(self.s.pids.get(name, 0))

    def migrate(self) -> None:
        """The schema, as its owner, before the services (which may not change it) start."""
        run([sys.executable, "-m", "shop.migrate", "--timeout", "60"], timeout=90,
            env={"SHOP_DATABASE_URL": self.bouncer.dsn(),
                 "SHOP_DATABASE_PASSWORD_FILE": str(self.password_file(USER))})

    def start_worker(self) -> None:
        env = self.service_env(self.s.service_settings)
        proc = spawn([sys.executable, "-m", "order_worker"], self.root / "logs" / "worker.log",
                     env=env)
        self.s.pids["worker"] = proc.pid
        self.save()

    def stop_worker(self) -> None:
        self._kill("worker")
        self.save()

    def stop_services(self) -> None:
        for name in SERVICES:
            self._kill(name)

    def _write_nginx_conf(self, orders_ceiling: int) -> Path:
        root = self.root / "nginx"
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        conf = root / "nginx.conf"
        # max_fails=0: a process slow under a surge is not taken for a dead one (nginx would
        # then send nobody to it for 10 s); a dead one refuses connections, tried elsewhere.
        orders = " ".join(f"server 127.0.0.1:{self.s.ports[name]} max_fails=0;"
                          for name in ORDERS_FLEET)
        conf.write_text(NGINX_CONF.format(root=root, port=self.s.ports["entry"],
                                          catalog=self.s.ports["catalog"], orders=orders,
                                          orders_ceiling=orders_ceiling))
        return conf

    def set_entry_ceiling(self, orders: int) -> None:
        """The entry's ceiling on orders in flight (the bench's "before" has none): nginx's
        configuration rewritten and reloaded (SIGHUP: no connection dropped)."""
        self._write_nginx_conf(orders)
        os.kill(int((self.root / "nginx" / "nginx.pid").read_text()), signal.SIGHUP)
        time.sleep(0.5)

    def _start_nginx(self) -> None:
        root = self.root / "nginx"
        conf = self._write_nginx_conf(ENTRY_ORDERS_CEILING)
        nginx = "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "nginx"
        proc = spawn([nginx, "-c", str(conf), "-p", str(root), "-e",
                      str(root / "nginx-error.log")], self.root / "logs" / "nginx.log")
        self.s.pids["nginx"] = proc.pid
        wait_until(lambda: get_ok(f"{self.entry_url}/health"), "nginx")

    def _kill(self, name: str) -> None:
        pid = self.s.pids.pop(name, 0)
        if pid:
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            for _ in range(100):  # up to 10 s for a graceful stop
                with suppress(ChildProcessError):  # reap it when this process started it
                    os.waitpid(pid, os.WNOHANG)
                try:
                    os.killpg(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.1)
            with _quiet():
                os.killpg(pid, signal.SIGKILL)

    def down(self, log: Any = print) -> None:
        if self.state_file.exists():
            # Another process (an `experiment run`) may have restarted services since this
            # object read the state: stop what is running now, not what ran then.
            self.state = LabState(**json.loads(self.state_file.read_text()))
        if self.state is None:
            log("lab is not up")
            return
        for name in ("nginx", *SERVICES, "moto", "latency-proxy", "aws-proxy"):
            self._kill(name)
        pid_file = self.root / "pgbouncer" / "pgbouncer.pid"
        if pid_file.exists():
            with _quiet():
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
        for name in ("node-a", "node-b"):
            with _quiet():
                self.node(name).stop("immediate")
        self.state_file.unlink(missing_ok=True)
        self.state = None
        log("lab down")

    def status(self) -> dict[str, Any]:
        """Each part: up or down, and the numbers that matter."""
        s = self.s
        parts: dict[str, Any] = {
            "writer": f"{self.primary.name} :{self.primary.port} "
                      f"{'up' if port_open(self.primary.port) else 'DOWN'}",
            "reader": f"{self.replica.name} :{self.replica.port} "
                      f"{'up' if port_open(self.replica.port) else 'DOWN'}",
            "pgbouncer": f":{s.ports['pgbouncer']} "
                         f"{'up' if port_open(s.ports['pgbouncer']) else 'DOWN'}",
            "moto": f":{s.ports['moto']} {'up' if port_open(s.ports['moto']) else 'DOWN'}",
            "entry": self.entry_url,
            "settings": _switches(s.service_settings),
        }
        for name in SERVICES:
            parts[name] = ("up" if get_ok(f"{self.service_url(name)}/health") else "DOWN")
        if port_open(s.ports["moto"]):
            parts["queue depth"] = queue_depth(self.moto.url, self.resources.queue_url)
            parts["dlq depth"] = queue_depth(self.moto.url, self.resources.dlq_url)
        return parts

    async def reset(self) -> None:
        """Seeded stock, no orders, empty queues and tables: a clean start for an experiment."""
        conn = await asyncpg.connect(self.primary.dsn(with_password=True), timeout=5)
        try:
            await reset_catalog(conn)
        finally:
            await conn.close()
        purge(self.moto.url, self.resources)


def _switches(settings: dict[str, str]) -> str:
    return str(Switches.from_env(settings))


def get_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _quiet() -> suppress:
    """Ignore a process or node that is already gone."""
    return suppress(ProcessLookupError, LabError, subprocess.SubprocessError, OSError)
