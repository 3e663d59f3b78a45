"""Starting and stopping the lab's local processes, each with its log file.

PostgreSQL and PgBouncer refuse to run as root: when the lab runs as root (a container, CI)
their commands run as the ``postgres`` user and their directories belong to it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

PG_BIN = Path(os.environ.get("SHOP_PG_BIN", "/usr/lib/postgresql/15/bin"))
SERVICE_USER = "postgres"


class LabError(RuntimeError):
    """A lab step failed; the message says which and where its log is."""


def as_service_user(cmd: Sequence[str]) -> list[str]:
    """Prefix a command so that it runs as ``postgres`` when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", SERVICE_USER, "--", *cmd]
    return list(cmd)


def give_to_service_user(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SERVICE_USER)
        shutil.chown(path, entry.pw_uid, entry.pw_gid)


class ToolMissing(LabError):
    """A command the lab needs is not installed here."""


def run(cmd: Sequence[str], *, timeout: float = 60, service_user: bool = False,
        env: dict[str, str] | None = None, missing: str = "", stdin: str | None = None,
        secrets: Iterable[str] = ()) -> subprocess.CompletedProcess[str]:
    """The lab's one way to run a command to completion. Whatever goes wrong is a LabError
    that says what and why (never a traceback): not installed (``ToolMissing``, with the
    ``missing`` hint), not finished within ``timeout``, or a non-zero exit with its output.

    A password never goes on a command line (``ps`` shows it to every local user): it goes in
    ``env`` or ``stdin``, neither of which an error repeats. ``secrets`` are values the
    command's own output might echo back (a statement quoted in an error): the error shows
    ``***`` in their place, and so does any value of ``env`` whose name says PASSWORD."""
    full = as_service_user(cmd) if service_user else list(cmd)
    hidden = [value for value in (*secrets, *(v for k, v in (env or {}).items()
                                               if "PASSWORD" in k.upper()))
              if value]
    shown = _redacted(" ".join(cmd), hidden)
    try:
        result = subprocess.run(full, capture_output=True, text=True, timeout=timeout,
                                env={**os.environ, **(env or {})}, input=stdin, check=False)
    except FileNotFoundError as exc:
        raise ToolMissing(f"{cmd[0]} is not installed (not found on PATH)"
                          + (f": {missing}" if missing else "")) from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{shown} did not finish within {timeout:g}s") from exc
    if result.returncode != 0:
        output = _redacted((result.stderr or result.stdout).strip(), hidden)[-2000:]
        raise LabError(f"{shown} failed ({result.returncode}): {output}")
    return result


def _redacted(text: str, secrets: Sequence[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def write_secret(path: Path, value: str, *, service_user: bool = False) -> None:
    """A password file: 0600 from the moment it exists (``os.open`` with the mode, whatever
    the umask), in a folder only its owner may enter, replaced in one rename (a reader never
    sees half of it). ``service_user``: owned by ``postgres`` when we are root, for the
    processes that run as it (PgBouncer's auth file)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.new")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    if service_user and os.geteuid() == 0:
        entry = pwd.getpwnam(SERVICE_USER)
        os.chown(tmp, entry.pw_uid, entry.pw_gid)
    tmp.replace(path)


def read_secret(path: Path) -> str:
    """A password file's first line."""
    return path.read_text().strip()


_handed_out: set[int] = set()


def free_port() -> int:
    """A port free now and not handed out before by this process: the kernel may offer a
    just-released port again, and a lab asks for several before starting anything."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30,
               interval: float = 0.1) -> None:
    """Readiness is waited for, not slept for: poll ``check`` until true or the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise LabError(f"timed out after {timeout:.0f}s waiting for {what}")


def running(pid: int) -> bool:
    """Process ``pid`` exists and is not a zombie waiting to be reaped."""
    if pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def spawn(cmd: Sequence[str], log_path: Path, *, env: dict[str, str] | None = None,
          service_user: bool = False) -> subprocess.Popen[bytes]:
    """Start a long-running process in its own session, its output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            as_service_user(cmd) if service_user else list(cmd),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def children(pid: int, marker: bytes = b"spawn_main") -> list[int]:
    """The processes whose parent is ``pid`` and whose command line holds ``marker`` (by
    default the workers a process manager started with multiprocessing: uvicorn's), read
    from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or not pid:
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and marker in cmdline:
            found.append(int(entry.name))
    return found
