"""PgBouncer as the lab's RDS Proxy: one writer endpoint and one reader endpoint.

The writer endpoint is the database alias ``shop`` and the reader endpoint ``shop_reader``
(the RDS Proxy default and READ_ONLY endpoints). A failover repoints them (rewrite + reload);
an outage disables the writer and reader aliases and kills their connections, which is what
deregistering the proxy's target does on AWS.

Every client gives its password (SCRAM), the admin console's user (``pgbouncer``) included,
whose password is a random one in the ``secrets`` folder (0600), as the roles' are; PgBouncer's
own auth file is 0600 too, its own.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from chaos_lab.local.postgres import DATABASE, ROLES, USER
from chaos_lab.processes import (
    LabError,
    give_to_service_user,
    port_open,
    read_secret,
    run,
    running,
    spawn,
    stop_process,
    wait_until,
    write_secret,
)

log = logging.getLogger(__name__)

WRITER_DB = DATABASE
READER_DB = f"{DATABASE}_reader"
ADMIN_USER = "pgbouncer"  # the admin console's (SHOW, RELOAD, PAUSE, KILL, RESUME, ...)

INI = """[databases]
{writer} = host=127.0.0.1 port={writer_port} dbname={database}
{reader} = host=127.0.0.1 port={reader_port} dbname={database}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir = {root}
; Every client gives its password (SCRAM), and PgBouncer logs in to PostgreSQL (SCRAM) with
; the same one, from this userlist (0600), re-read on RELOAD as RDS Proxy re-reads its secret.
; PgBouncer 1.18 refuses a wrong client password with SQLSTATE 08P01 ("SASL authentication
; failed"), not 28P01: the shop reads that as a refused password too (shop.db.is_auth_error)
; and goes back to its password's source, as after a rotation it must.
auth_type = scram-sha-256
auth_file = {root}/userlist.txt
admin_users = {admin}
; session pooling: a client connection is tied to one server connection, so when the node
; behind it dies the client's socket dies too, as a direct connection to a database endpoint
; would. What survives a failover is then up to the application, which is what we measure.
pool_mode = session
max_client_conn = 1000
default_pool_size = 60
; fail fast instead of queueing clients for minutes while the target is gone
server_connect_timeout = 2
server_login_retry = 1
query_wait_timeout = 3
server_check_delay = 1
server_lifetime = 3600
ignore_startup_parameters = extra_float_digits
logfile = {root}/pgbouncer.log
pidfile = {root}/pgbouncer.pid
"""


@dataclass
class PgBouncer:
    root: Path
    port: int
    writer_port: int = 0
    reader_port: int = 0
    passwords: dict[str, str] = field(default_factory=dict)  # app role -> its password
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def ini(self) -> Path:
        return self.root / "pgbouncer.ini"

    @property
    def secrets_dir(self) -> Path:
        """The passwords' folder, shared with the nodes beside it (chaos_lab.local.postgres)."""
        return self.root.parent / "secrets"

    @property
    def admin_password_file(self) -> Path:
        return self.secrets_dir / f"{ADMIN_USER}.password"

    def password(self, user: str) -> str:
        """A role's password: the one it was given (``passwords``), else its file's."""
        if user in self.passwords:
            return self.passwords[user]
        return read_secret(self.secrets_dir / f"{user}.password")

    def dsn(self, reader: bool = False, user: str = USER, *, with_password: bool = False) -> str:
        database = READER_DB if reader else WRITER_DB
        auth = f"{user}:{quote(self.password(user), safe='')}" if with_password else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    @staticmethod
    def binary() -> str:
        found = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        return found

    def _write_ini(self) -> None:
        self.ini.write_text(INI.format(
            writer=WRITER_DB, reader=READER_DB, database=DATABASE, port=self.port,
            writer_port=self.writer_port, reader_port=self.reader_port, root=self.root,
            admin=ADMIN_USER,
        ))
        self._write_userlist()

    def _write_userlist(self) -> None:
        """Each role with its password, and the admin console's user with its own (a new
        random one the first time); 0600, PgBouncer's."""
        if not self.admin_password_file.exists():
            write_secret(self.admin_password_file, secrets.token_urlsafe(16))
        users = {**{role: self.password(role) for role in ROLES},
                 ADMIN_USER: read_secret(self.admin_password_file)}
        write_secret(self.root / "userlist.txt",
                     "".join(f'"{user}" "{_quoted(password)}"\n'
                             for user, password in users.items()),
                     service_user=True)

    def set_passwords(self, passwords: dict[str, str]) -> None:
        """New passwords for the app roles, re-read at once (RELOAD); the endpoints as they
        are (only the userlist is rewritten)."""
        self.passwords = {**self.passwords, **passwords}
        self._write_userlist()
        self.admin("RELOAD")

    def start(self, writer_port: int, reader_port: int) -> None:
        self.writer_port, self.reader_port = writer_port, reader_port
        give_to_service_user(self.root)
        self._write_ini()
        self._launch()

    def _launch(self) -> None:
        """Start PgBouncer on the ini as written, and wait until it listens."""
        self._proc = spawn([self.binary(), str(self.ini)], self.root / "stdout.log",
                           service_user=True)
        wait_until(lambda: port_open(self.port), f"pgbouncer on port {self.port}")

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None

    def repoint(self, writer_port: int, reader_port: int) -> None:
        """Point the endpoints at other nodes (the failover's DNS flip) and reload."""
        self.writer_port, self.reader_port = writer_port, reader_port
        self._write_ini()
        self.admin("RELOAD")

    def lose_target(self) -> None:
        """Refuse new connections and drop the open ones: the proxy has no target."""
        for database in (WRITER_DB, READER_DB):
            self.admin(f"DISABLE {database}")
            self.admin(f"KILL {database}")
        for database in (WRITER_DB, READER_DB):  # again: a PgBouncer that died on KILL and
            self.admin(f"DISABLE {database}")   # was started again has forgotten them

    def restore_target(self) -> None:
        """Idempotent: resuming an endpoint that is not paused is no error here."""
        for database in (WRITER_DB, READER_DB):
            self.resume(database)
            self.admin(f"ENABLE {database}")

    def hold(self) -> None:
        """Drop every connection and hold new ones (they wait, up to query_wait_timeout, then
        are refused) until ``resume``: RDS Proxy during a failover."""
        for database in (WRITER_DB, READER_DB):
            self.admin(f"KILL {database}")

    def resume(self, database: str) -> None:
        try:
            self.admin(f"RESUME {database}")
        except LabError as exc:
            if "not paused" not in str(exc):
                raise

    def repoint_reader(self, port: int) -> None:
        """Only the reader endpoint moves (a reader lost, or back)."""
        self.reader_port = port
        self._write_ini()
        self.admin("RELOAD")

    def admin(self, command: str) -> str:
        """A command on the admin console (SHOW, RELOAD, PAUSE, KILL, RESUME, ...), as its
        user, the password in psql's environment.

        Debian's PgBouncer (1.18) now and then dies of a SIGSEGV on ``KILL`` with clients
        connected (pgbouncer/pgbouncer#1401, still open upstream): the lab's proxy would be
        gone for every run after. When the command fails and the process is gone, it is
        started again (same port, same ini: the endpoints as last written), said loudly, and
        the command sent once more; what it had disabled or paused is lost with it, so the
        faults that rely on that state set it again (``lose_target``)."""
        try:
            return self._admin(command)
        except LabError:
            if self.alive():
                raise
        log.warning("pgbouncer on port %d died (PgBouncer's crash on KILL, "
                    "pgbouncer/pgbouncer#1401?): starting it again", self.port)
        self._launch()
        return self._admin(command)

    def _admin(self, command: str) -> str:
        out = run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", ADMIN_USER,
                   "-d", "pgbouncer", "-Atqc", command], timeout=15,
                  env={"PGPASSWORD": read_secret(self.admin_password_file)})
        return out.stdout

    def alive(self) -> bool:
        """Its process (the pid file's) is running."""
        try:
            return running(int((self.root / "pgbouncer.pid").read_text()))
        except (FileNotFoundError, ValueError):
            return False


def _quoted(password: str) -> str:
    """A userlist value: a double quote inside is doubled."""
    return password.replace('"', '""')
