"""A PostgreSQL node from the local binaries: a primary, or a streaming replica of one."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from chaos_lab.processes import (
    PG_BIN,
    LabError,
    give_to_service_user,
    port_open,
    run,
    wait_until,
)

DATABASE = "shop"
USER = "shop"  # owns the tables, runs the migrations
PASSWORD = "shop"
# Least privilege (migration 0004): what the services run as.
ORDERS_USER = "shop_orders"  # the orders service and the order-worker
CATALOG_USER = "shop_catalog"  # the catalog: read only
APP_USERS = (ORDERS_USER, CATALOG_USER)

CONFIG = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket_dir}'
max_connections = 200
shared_buffers = 64MB
fsync = off
full_page_writes = on
wal_level = replica
wal_log_hints = on
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
wal_keep_size = 256MB
logging_collector = off
"""

HBA = """
local all all trust
{password_roles}host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
"""


def hba(password_roles: Iterable[str] = ()) -> str:
    """Trust on the loopback, except for ``password_roles``: they authenticate (SCRAM), so
    that a rotated password is refused until the new one reaches its source."""
    roles = ",".join(password_roles)
    return HBA.format(password_roles=f"host all {roles} 127.0.0.1/32 scram-sha-256\n"
                      if roles else "")


@dataclass
class PostgresNode:
    """One data directory and the port it serves on. ``name`` appears in logs and reports."""

    name: str
    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def dsn(self, database: str = DATABASE, user: str = USER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def _pg(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run([str(PG_BIN / tool), *args], service_user=True, timeout=timeout)

    def _configure(self, password_roles: Iterable[str] = ()) -> None:
        conf = CONFIG.format(port=self.port, socket_dir=self.root)
        with (self.data / "postgresql.auto.conf").open("a") as f:
            f.write(conf)
        (self.data / "pg_hba.conf").write_text(hba(password_roles))

    def init_primary(self, passwords: Mapping[str, str] | None = None) -> None:
        """initdb, start, and create the shop's roles and database (empty: the app migrates;
        migration 0004 grants the services' roles what they may do). The app roles named in
        ``passwords`` get those and must give them over TCP (the others: trust). A replica's
        base backup copies the rule."""
        passwords = dict(passwords or {})
        self._fresh_root()
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                 "--no-sync", "-E", "UTF8")
        self._configure(passwords)
        self.start()
        self.psql(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'", database="postgres")
        self.psql(f"CREATE DATABASE {DATABASE} OWNER {USER}", database="postgres")
        for role in APP_USERS:
            self.set_password(role, passwords.get(role, PASSWORD), create=True)

    def set_password(self, role: str, password: str, create: bool = False) -> None:
        """(Create and) give ``role`` this password; sessions already open go on."""
        quoted = password.replace("'", "''")
        verb = "CREATE" if create else "ALTER"
        self.psql(f"{verb} ROLE {role} LOGIN PASSWORD '{quoted}'", database="postgres")

    def init_replica(self, primary: PostgresNode) -> None:
        """A streaming replica from a base backup of ``primary``, then started."""
        self._fresh_root()
        self._pg("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U",
                 "postgres", "-D", str(self.data), "-R", "-X", "stream", "--no-sync",
                 "--checkpoint=fast", timeout=300)
        self._set_port()
        self.start()
        self.follow(primary)

    def follow(self, primary: PostgresNode) -> None:
        """Wait until this replica streams from ``primary``, then make its commits synchronous."""
        wait_until(lambda: primary.psql(
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
            database="postgres").strip() not in ("", "0"), f"{self.name} to stream")
        primary.require_sync_replica(True)

    def _fresh_root(self) -> None:
        self.stop("immediate")
        if self.root.exists():
            shutil.rmtree(self.root)
        give_to_service_user(self.root)

    def _set_port(self) -> None:
        with (self.data / "postgresql.auto.conf").open("a") as f:
            f.write(f"\nport = {self.port}\nunix_socket_directories = '{self.root}'\n")

    def start(self) -> None:
        self._pg("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60")
        wait_until(lambda: port_open(self.port), f"postgres {self.name} on port {self.port}")

    def stop(self, mode: str = "fast") -> None:
        """``immediate`` is a crash (no checkpoint, connections cut): the failover's fault."""
        if self.running():
            self._pg("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "60")

    def running(self) -> bool:
        if not (self.data / "postmaster.pid").exists():
            return False
        try:
            self._pg("pg_ctl", "status", "-D", str(self.data), timeout=10)
        except LabError:
            return False
        return True

    def promote(self) -> None:
        """Become the writer. It has no replica yet, so it stops waiting for one."""
        self._pg("pg_ctl", "promote", "-D", str(self.data), "-w", "-t", "60")
        self.require_sync_replica(False)

    def require_sync_replica(self, required: bool) -> None:
        """Synchronous replication, as Aurora's shared storage gives: a commit the writer
        acknowledged survives the writer's crash. Off while the writer has no replica."""
        names = "*" if required else ""
        self.psql(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'", database="postgres")
        self.psql("SELECT pg_reload_conf()", database="postgres")

    def is_primary(self) -> bool:
        return self.psql("SELECT NOT pg_is_in_recovery()", database="postgres").strip() == "t"

    def rejoin_as_replica(self, new_primary: PostgresNode) -> None:
        """Make a former primary follow ``new_primary`` so that the lab can fail over again.

        A fresh base backup: the lab's database is small (about a second), and it is always
        correct, where pg_rewind after a crash-stop needs a clean shutdown first.
        """
        self.init_replica(new_primary)

    def psql(self, sql: str, database: str = DATABASE) -> str:
        out = self._pg("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                       "-d", database, "-v", "ON_ERROR_STOP=1", "-Atqc", sql, timeout=30)
        return out.stdout
