"""``chaos-shop halt``: the run's state persisted where another process finds it, a live run
asked to halt (it restores and ends halted), a fault left by a dead runner restored from the
state, and nothing to halt is no error. Against the real lab: tests/test_experiments.py."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_run_ends import EXPERIMENT, quiet
from typer.testing import CliRunner

from chaos_lab import experiment as experiments
from chaos_lab.cli import app
from chaos_lab.halt import RunState, alive, halt
from chaos_lab.model import Fault, Switches, load
from chaos_lab.processes import LabError
from support import Scripted

runner = CliRunner()


class Said(list[str]):
    def __call__(self, message: str) -> None:
        self.append(message)


def dead_pid() -> int:
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


def left_behind(state: RunState, fault: str = "db-outage") -> None:
    """What a runner that was killed leaves: its record, a fault on."""
    state.folder.mkdir(parents=True, exist_ok=True)
    state.path.write_text(json.dumps({
        "pid": dead_pid(), "host": os.uname().nodename, "process_start": "1",
        "target": state.target, "what": "experiment run db-outage", "started": "then",
        "experiment": "db-outage", "halt": None,
        "fault": {"name": fault, "options": {}, "hold": 10, "since": "then", "details": {},
                  "switches": {"proxy": True, "degradation": True}}}))


async def test_nothing_to_halt_is_no_error(tmp_path: Path) -> None:
    said = Said()
    assert await halt(RunState(tmp_path / "no-lab", "local"), _never, said)
    assert "nothing to halt on the local target" in said[0]


def test_halt_on_the_command_line_with_nothing_to_halt(tmp_path: Path) -> None:
    result = runner.invoke(app, ["halt", "--lab-dir", str(tmp_path / "no-lab")])
    assert result.exit_code == 0 and "nothing to halt" in result.output
    assert not (tmp_path / "no-lab").exists(), "halt makes no lab directory"


async def _never(fault: Fault, persisted: dict[str, Any], say: Any) -> None:
    raise AssertionError("nothing is to be restored from here")


async def test_a_fault_left_by_a_dead_runner_is_restored_from_its_state(tmp_path: Path) -> None:
    state = RunState(tmp_path, "local")
    left_behind(state, "credential-rotation")
    assert not alive(state.read() or {})
    restored: list[tuple[Fault, dict[str, Any]]] = []

    async def restore(fault: Fault, persisted: dict[str, Any], say: Any) -> None:
        restored.append((fault, persisted))

    said = Said()
    assert await halt(state, restore, said)
    assert [f for f, _ in restored] == [Fault.CREDENTIAL_ROTATION]
    assert restored[0][1]["switches"] == {"proxy": True, "degradation": True}
    assert "is gone; restoring the fault it left on: credential-rotation" in " ".join(said)
    assert state.read() is None, "cleared once restored"
    assert await halt(state, _never, said), "idempotent"


def test_a_run_refuses_to_start_over_a_fault_left_on_or_beside_another_run(
        tmp_path: Path) -> None:
    state = RunState(tmp_path, "local")
    left_behind(state)
    with pytest.raises(LabError, match="a fault is still on the local target: db-outage, "
                                       "left by a run that is gone"), state.session("x"):
        pass
    state.clear()
    with state.session("mine"):
        other = RunState(tmp_path, "local")
        record = other.read()
        assert record is not None and record["pid"] == os.getpid()
        assert alive(record)
    assert state.read() is None, "removed at the end of the session"


async def test_a_live_run_is_asked_to_halt_and_ends_halted(shop_url: str,
                                                           tmp_path: Path) -> None:
    path = tmp_path / "scripted.yaml"
    path.write_text(EXPERIMENT.replace("hold: 1", "hold: 6").replace("duration: 3",
                                                                     "duration: 9"))
    spec = load(path).resolve(source=path)
    state = RunState(tmp_path / "lab", "scripted")
    target = Scripted(shop_url, inject="break")
    with state.session("experiment run scripted"):
        running = asyncio.create_task(experiments.run(
            target, spec, experiments.RESILIENT_SWITCHES, "AFTER", quiet,  # type: ignore[arg-type]
            stops=state))
        await asyncio.wait_for(target.injected.wait(), 10)
        record = state.read()
        assert record is not None and record["fault"]["name"] == "db-outage"
        assert record["fault"]["switches"] == Switches().model_dump()
        said = Said()
        assert await halt(state, _never, said, wait=10)
        assert "asked the run to halt" in said[0] and said[-1] == "halted: the run restored " \
                                                                  "the fault"
        result = await running
    assert result.status == "halted" and (result.reason or "").startswith("by `chaos-shop halt`")
    assert target.calls[-1] == "restore"
    assert state.read() is None
