"""A PostgreSQL node from the local binaries: a primary, or a streaming replica of one.

Nobody else on this machine gets in without a password: the superuser (``postgres``) only
through the node's own unix socket, and only as the operating-system user that runs the node
(peer authentication, pg_ident.conf's ``lab`` map; plus root, who may become that user
anyway); every role over TCP with its password (SCRAM). The roles' passwords are random, one
file each (0600) in the ``secrets`` folder beside the nodes' folders, where the lab keeps the
services' password files too; a password reaches PostgreSQL as a SCRAM verifier on psql's
standard input, never on a command line or in clear.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from chaos_lab.processes import (
    PG_BIN,
    SERVICE_USER,
    LabError,
    give_to_service_user,
    port_open,
    read_secret,
    run,
    wait_until,
    write_secret,
)
from shop.migrate import scram_verifier

DATABASE = "shop"
USER = "shop"  # owns the tables, runs the migrations
SUPERUSER = "postgres"  # the node's own operating-system user, through the socket only
# Least privilege (migration 0004): what the services run as.
ORDERS_USER = "shop_orders"  # the orders service and the order-worker
CATALOG_USER = "shop_catalog"  # the catalog: read only
APP_USERS = (ORDERS_USER, CATALOG_USER)
ROLES = (USER, *APP_USERS)  # the roles that log in, each with its password

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

# No ``trust`` anywhere: the superuser through the socket as the node's own OS user (peer,
# mapped), replication the same way (a replica streams over its primary's socket); everyone
# over TCP with a password, SCRAM, so that a rotated password is refused until the new one
# reaches its source.
HBA = """
local all postgres peer map=lab
local replication postgres peer map=lab
host all all 127.0.0.1/32 scram-sha-256
"""


def ident() -> str:
    """pg_ident.conf: the operating-system users that may be the superuser: the one that runs
    the nodes, and the one that runs the lab (the same but as root)."""
    me = pwd.getpwuid(os.geteuid()).pw_name  # not $USER: whoever we really are
    users = dict.fromkeys([SERVICE_USER if os.geteuid() == 0 else me, me])
    return "".join(f"lab {user} {SUPERUSER}\n" for user in users)


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

    @property
    def secrets_dir(self) -> Path:
        """The roles' password files: beside the nodes' folders, shared by the nodes there."""
        return self.root.parent / "secrets"

    def password_file(self, role: str) -> Path:
        return self.secrets_dir / f"{role}.password"

    def password(self, role: str = USER) -> str:
        return read_secret(self.password_file(role))

    def dsn(self, database: str = DATABASE, user: str = USER, *,
            with_password: bool = False) -> str:
        """The node over TCP as ``user``; ``with_password``: its password in the URL, for a
        client of the lab's own that has no other way to be given it."""
        auth = f"{user}:{quote(self.password(user), safe='')}" if with_password else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def _pg(self, tool: str, *args: str, timeout: float = 60, stdin: str | None = None,
            secrets: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        return run([str(PG_BIN / tool), *args], service_user=True, timeout=timeout,
                   stdin=stdin, secrets=secrets)

    def _configure(self) -> None:
        conf = CONFIG.format(port=self.port, socket_dir=self.root)
        with (self.data / "postgresql.auto.conf").open("a") as f:
            f.write(conf)
        (self.data / "pg_hba.conf").write_text(HBA)
        (self.data / "pg_ident.conf").write_text(ident())

    def init_primary(self, passwords: Mapping[str, str] | None = None) -> None:
        """initdb, start, and create the shop's roles and database (empty: the app migrates;
        migration 0004 grants the services' roles what they may do). Each role's password:
        from ``passwords``, else the one its file has (the nodes of one folder share them),
        else a new random one; written to its file (0600) first. A replica's base backup
        copies the roles and the rules."""
        passwords = dict(passwords or {})
        for role in ROLES:
            if role in passwords or not self.password_file(role).exists():
                write_secret(self.password_file(role),
                             passwords.get(role) or secrets.token_urlsafe(16))
        self._fresh_root()
        self._pg("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth-local=peer",
                 "--auth-host=scram-sha-256", "--no-sync", "-E", "UTF8")
        self._configure()
        self.start()
        for role in ROLES:
            self.set_password(role, self.password(role), create=True)
        self.psql(f"CREATE DATABASE {DATABASE} OWNER {USER}", database="postgres")

    def set_password(self, role: str, password: str, create: bool = False) -> None:
        """(Create and) give ``role`` this password; sessions already open go on. Sent as a
        SCRAM verifier on psql's standard input: the password is on no command line, in no
        server log, and no error can repeat it."""
        verifier = scram_verifier(password)
        verb = "CREATE" if create else "ALTER"
        self._pg("psql", *self._superuser("postgres"), "-v", "ON_ERROR_STOP=1", "-Atq",
                 stdin=f"{verb} ROLE {role} LOGIN PASSWORD '{verifier}';\n", timeout=30,
                 secrets=(password, verifier))

    def _superuser(self, database: str) -> tuple[str, ...]:
        """psql's connection options: the node's own socket, as the superuser (peer)."""
        return ("-h", str(self.root), "-p", str(self.port), "-U", SUPERUSER, "-d", database)

    def init_replica(self, primary: PostgresNode) -> None:
        """A streaming replica from a base backup of ``primary`` over its socket (replication
        is the superuser's, by peer), then started."""
        self._fresh_root()
        self._pg("pg_basebackup", "-h", str(primary.root), "-p", str(primary.port), "-U",
                 SUPERUSER, "-D", str(self.data), "-R", "-X", "stream", "--no-sync",
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
        """SQL as the superuser, on the node's socket. Never a password in ``sql``: it would be
        on a command line (``set_password`` sends one properly)."""
        out = self._pg("psql", *self._superuser(database), "-v", "ON_ERROR_STOP=1", "-Atqc",
                       sql, timeout=30)
        return out.stdout
