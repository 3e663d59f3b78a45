"""``chaos-shop halt``: stop what a run does to a target, from another terminal or after the
runner died.

A run (``experiment run``, ``gameday``) keeps its state in the lab directory, one file per
target (``run-<target>.json``): who runs (pid, host, the process's start), which experiment,
and the fault while it is on (its name, options and hold, the run's switches, and what the
target says identifies it: on AWS the FIS experiment's id), cleared once it is restored.

``halt`` reads it. While the runner lives, it asks it to halt (the file says so) and waits:
the runner checks once a second, restores the fault at once and ends its run ``halted``. When
the runner is gone (killed, its machine rebooted), ``halt`` restores the persisted fault
itself, then clears the state. Either way it is idempotent: nothing to halt is exit 0.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chaos_lab.experiment import HALTED, Stop
from chaos_lab.model import Experiment, Fault, Switches, fault_options
from chaos_lab.processes import LabError
from chaos_lab.targets.base import Say


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _process_start(pid: int) -> str | None:
    """The process's start (clock ticks since boot, /proc/<pid>/stat), so that a pid reused
    by another process is not taken for the runner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _me() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "process_start": _process_start(os.getpid())}


def alive(record: dict[str, Any]) -> bool:
    """The runner that wrote ``record`` still runs (on this machine)."""
    if record.get("host") != socket.gethostname():
        return True  # another machine's: it cannot be checked from here, assume it runs
    pid = int(record.get("pid", 0))
    if pid <= 0:
        return False
    start = _process_start(pid)
    return start is not None and start == record.get("process_start")


class RunState:
    """One target's run in progress, in ``folder/run-<target>.json``: written by the runner
    (it is the runner's ``experiment.Stops``), read and marked by ``halt``."""

    def __init__(self, folder: Path, target: str) -> None:
        self.folder = folder
        self.target = target
        self.path = folder / f"run-{target}.json"

    # The file, under a lock: the runner and halt both write it -----------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f".run-{self.target}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise LabError(f"{self.path} cannot be read ({exc}): remove it once nothing "
                           f"runs") from exc
        return data

    def _write(self, data: dict[str, Any]) -> None:
        partial = self.path.with_suffix(".json.partial")
        partial.write_text(json.dumps(data, indent=2))
        partial.replace(self.path)

    def _update(self, change: Callable[[dict[str, Any]], None]) -> None:
        with self._locked():
            data = self.read()
            if data is None or not self._mine(data):
                return
            change(data)
            self._write(data)

    @staticmethod
    def _mine(data: dict[str, Any]) -> bool:
        return bool(data.get("pid") == os.getpid() and data.get("host") == socket.gethostname())

    # The runner's side ---------------------------------------------------------------------

    @contextmanager
    def session(self, what: str) -> Iterator[RunState]:
        """A run (or a gameday) on this target, from its start to its end: another one at
        the same time is refused; the state is removed at the end unless a fault is still on
        (its restore failed: ``halt`` tries again)."""
        with self._locked():
            data = self.read()
            if data is not None and not self._mine(data) and alive(data):
                raise LabError(
                    f"a run is already going on the {self.target} target ({data.get('what')}, "
                    f"pid {data.get('pid')} on {data.get('host')}, since {data.get('started')})"
                    f": wait for it, or stop it with `chaos-shop halt --target {self.target}`")
            if data is not None and data.get("fault") and not self._mine(data):
                raise LabError(
                    f"a fault is still on the {self.target} target: {data['fault']['name']}, "
                    f"left by a run that is gone (pid {data.get('pid')}): restore it with "
                    f"`chaos-shop halt --target {self.target}` first")
            self._write({**_me(), "target": self.target, "what": what, "started": _now(),
                         "experiment": None, "fault": None, "halt": None})
        try:
            yield self
        finally:
            with self._locked():
                data = self.read()
                if data is not None and self._mine(data) and not data.get("fault"):
                    self.path.unlink(missing_ok=True)

    def experiment(self, name: str) -> None:
        self._update(lambda d: d.update(experiment=name))

    def fault_on(self, spec: Experiment, switches: Switches | None = None) -> None:
        fault = {"name": spec.fault.value, "options": spec.options.model_dump(mode="json"),
                 "hold": spec.hold, "since": _now(), "details": {},
                 "switches": None if switches is None else switches.model_dump()}
        self._update(lambda d: d.update(experiment=spec.name, fault=fault))

    def fault_details(self, details: dict[str, str]) -> None:
        """What the target says identifies the fault (AWS: the FIS experiment's id)."""
        def change(data: dict[str, Any]) -> None:
            if data.get("fault"):
                data["fault"]["details"] = dict(details)
        self._update(change)

    def fault_off(self) -> None:
        self._update(lambda d: d.update(fault=None))

    def stop_requested(self) -> Stop | None:
        data = self.read()
        halt = (data or {}).get("halt")
        if not halt or data is None or not self._mine(data):
            return None
        return Stop(HALTED, f"by `chaos-shop halt` ({halt['by']}, {halt['at']})")

    # halt's side ---------------------------------------------------------------------------

    def ask_to_halt(self) -> dict[str, Any] | None:
        """Mark the run as asked to halt; its record as it was (None: no run)."""
        with self._locked():
            data = self.read()
            if data is None:
                return None
            if not data.get("halt"):
                me = _me()
                data["halt"] = {"by": f"pid {me['pid']} on {me['host']}", "at": _now()}
                self._write(data)
            return data

    def clear(self) -> None:
        with self._locked():
            self.path.unlink(missing_ok=True)


# What a halt does ------------------------------------------------------------------------

Restorer = Callable[[Fault, dict[str, Any], Say], Awaitable[None]]


async def halt(state: RunState, restore: Restorer, say: Say, wait: float = 120.0,
               force: bool = False, poll: float = 0.5) -> bool:
    """Stop the run on ``state``'s target: ask its runner and wait up to ``wait`` seconds
    for it to restore the fault, or restore it here (``restore``, given the persisted fault)
    when the runner is gone or ``force``. True when nothing is left on; False when the
    runner did not restore within ``wait``."""
    record = state.read()
    if record is None:
        say(f"nothing to halt on the {state.target} target: no run in progress, no fault "
            f"left on")
        return True
    runner = f"pid {record.get('pid')} on {record.get('host')}"
    if alive(record):
        record = state.ask_to_halt() or record
        fault = record.get("fault")
        say(f"asked the run to halt ({record.get('what')}, {runner}"
            + (f"; fault {fault['name']} on since {fault['since']}" if fault else "")
            + "); it restores the fault and ends its run halted")
    if alive(record) and not force:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            now = state.read()
            if now is None or not now.get("fault"):
                say("halted: the run restored the fault" if record.get("fault")
                    else "halted: no fault was on")
                return True
            if not alive(now):
                say(f"the run ({runner}) is gone before it restored the fault: restoring it "
                    f"here")
                break
            await asyncio.sleep(poll)
        else:
            say(f"the run ({runner}) has not restored the fault within {wait:g}s (it does "
                f"once its inject returns); `chaos-shop halt --force` restores it from here")
            return False
        record = state.read() or record
    fault = record.get("fault")
    gone = not alive(record)
    if fault:
        if gone:
            say(f"the run ({runner}) is gone; restoring the fault it left on: {fault['name']} "
                f"(since {fault['since']})")
        else:
            say(f"--force: restoring {fault['name']} from here while the run ({runner}) "
                f"lives; restores are idempotent")
        await restore(Fault(fault["name"]), fault, say)
        say(f"halted: {fault['name']} restored")
    else:
        say(f"halted: the run ({runner}) is gone and left no fault on")
    if gone:
        state.clear()
    return True


async def restore_local(lab_dir: Path, fault: Fault, persisted: dict[str, Any],
                        say: Say) -> None:
    """The local lab: the fault's own restore, made from its persisted options, then what
    only its runner knew put right: the worker running if the settings have one (a
    worker-crash's), the app roles' passwords in PostgreSQL and PgBouncer those of their
    files (a credential rotation stopped between its two steps)."""
    from chaos_lab.local.lab import Lab
    from chaos_lab.local.postgres import APP_USERS
    from chaos_lab.model import implementation
    from chaos_lab.targets.local import FAULTS

    lab = Lab(lab_dir)
    made = implementation(FAULTS, fault, "local")(options_of(fault, persisted))
    await asyncio.to_thread(made.restore, lab)
    lab = Lab(lab_dir)  # the restore may have changed it (a failover's writer)
    if Switches.from_env(lab.s.service_settings).degradation \
            and not _running(lab.s.pids.get("worker", 0)):
        say("the worker is not running: starting it")
        await asyncio.to_thread(lab.start_worker)
    if fault is Fault.CREDENTIAL_ROTATION:
        passwords = lab.passwords()
        say(f"the app roles' passwords ({', '.join(APP_USERS)}) set again to their files' in "
            f"PostgreSQL and PgBouncer")
        for role in APP_USERS:
            await asyncio.to_thread(lab.primary.set_password, role, passwords[role])
        await asyncio.to_thread(lab.bouncer.set_passwords, passwords)


async def restore_compose(project_dir: Path, compose_file: str, fault: Fault,
                          persisted: dict[str, Any], say: Say) -> None:
    """The compose stack: the fault's restore with its persisted options; the worker
    started again if the run's settings have one."""
    from chaos_lab.targets.compose import WORKER, ComposeTarget

    target = ComposeTarget(project_dir, compose_file=compose_file)
    target.fault_options(fault, options_of(fault, persisted))
    await target.restore(fault, say)
    switches = persisted.get("switches")
    if switches and Switches(**switches).degradation:
        await asyncio.to_thread(target.compose, "start", WORKER)
    if fault is Fault.CREDENTIAL_ROTATION:
        say("credential-rotation: if its runner died between its two steps, the new passwords "
            "it set in PostgreSQL are lost with it: `docker compose down` and `up` give the "
            "stack the passwords of .env again")


async def restore_aws(make_target: Callable[[], Any], fault: Fault,
                      persisted: dict[str, Any], say: Say) -> None:
    """AWS: stop the run's FIS experiment (by the id it persisted); a forced deployment
    cannot be stopped."""
    details = persisted.get("details") or {}
    experiment_id = details.get("fis_experiment_id")
    if experiment_id:
        status = await make_target().stop_experiment(experiment_id, say)
        say(f"FIS experiment {experiment_id}: {status}")
    elif details.get("ecs_deployment_id"):
        say(f"ECS deployment {details['ecs_deployment_id']} cannot be stopped; ECS rolls it "
            f"on (its circuit breaker rolls back a failed one)")
    else:
        say("the run had not yet learned its FIS experiment's id: stop any experiment tagged "
            "chaos-shop:fault in the FIS console")


def _running(pid: int) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def options_of(fault: Fault, persisted: dict[str, Any]) -> Any:
    """The persisted options, validated again as the fault takes them."""
    with suppress(Exception):
        return fault_options(fault, persisted.get("options") or {})
    return fault_options(fault)
