"""Every end of a run leaves a journal with its status, and the fault restored: completed,
failed (an inject that raises), interrupted (Ctrl-C), halted, aborted by a guardrail.

No lab: a fake shop (an HTTP server in a thread that answers like the shop's entry) and a
target that scripts what its faults do."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from chaos_lab import experiment as experiments
from chaos_lab.experiment import RESILIENT_SWITCHES, Stop
from chaos_lab.journal import Journal, git_revision, tool_version
from chaos_lab.model import Experiment, Switches, load
from chaos_lab.processes import LabError
from support import FakeShop, Scripted

EXPERIMENT = """\
name: scripted
description: a short db-outage against a fake shop
fault: {name: db-outage, hold: 1}
timing: {fault_at: 1, duration: 3}
traffic: {reads_per_second: 10, writes_per_second: 2, timeout: 1}
fragile: {proxy: true, degradation: false}
hypothesis: {max_failed_requests: 0, max_p99_latency_ms: 1000, max_recovery_seconds: 5,
             max_false_answers: 1000, stock_consistent: false}
"""


@pytest.fixture
def spec(tmp_path: Path) -> Experiment:
    path = tmp_path / "scripted.yaml"
    path.write_text(EXPERIMENT)
    return load(path).resolve(source=path)


def _journal(journal: Journal) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(journal.path.read_text())
    return data


def quiet(_: str) -> None:
    pass


async def test_a_completed_run_has_a_journal_with_where_and_what_it_ran(
        shop_url: str, spec: Experiment, tmp_path: Path) -> None:
    journal = Journal.open(tmp_path, spec, "scripted")
    assert _journal(journal)["status"] == "running"  # written before anything runs
    target = Scripted(shop_url)
    result = await experiments.run(target, spec, RESILIENT_SWITCHES, "AFTER", quiet,  # type: ignore[arg-type]
                                   journal=journal)
    journal.end()
    data = _journal(journal)
    assert result.status == data["status"] == "completed" and data["runs"][0]["status"] \
        == "completed"
    assert target.calls == ["apply", "reset", "inject", "restore"]
    assert data["started"] < data["ended"] and data["started"].endswith("Z")
    assert data["duration_seconds"] >= 3
    assert data["tool_version"] == tool_version() != "unknown"
    revision = git_revision()
    assert revision is not None, "the tests run from a checkout"
    assert data["git_revision"] == revision[0] and len(data["git_revision"]) == 40
    assert data["target"] == "scripted"
    assert data["settings"] == {"resilient": {"proxy": True, "degradation": True}}
    assert data["runs"][0]["settings"] == "resilient"
    assert data["runs"][0]["switches"] == {"proxy": True, "degradation": True}
    assert data["experiment_file"] == {
        "path": str(spec.source),
        "sha256": __import__("hashlib").sha256(EXPERIMENT.encode()).hexdigest()}
    assert (journal.folder / "junit.xml").exists() and (journal.folder / "timeline.png").exists()


async def test_an_inject_that_raises_is_a_failed_journal_with_the_error(
        shop_url: str, spec: Experiment, tmp_path: Path) -> None:
    journal = Journal.open(tmp_path, spec, "scripted")
    target = Scripted(shop_url, inject="raise")
    with pytest.raises(LabError, match="admin console"):
        await experiments.run(target, spec, RESILIENT_SWITCHES, "AFTER", quiet,  # type: ignore[arg-type]
                              journal=journal)
    assert target.calls[-1] == "restore", "the rollback ran"
    journal.end()
    data = _journal(journal)
    assert data["status"] == "failed" and "admin console" in data["error"]
    [run] = data["runs"]
    assert run["status"] == "failed" and run["verdict"] == "fail"
    assert run["timeline"], "what the traffic showed until then is kept"
    assert data["verdict"] == "fail"
    junit = (journal.folder / "junit.xml").read_text()
    assert 'name="run_status"' in junit and "admin console" in junit


async def test_ctrl_c_restores_and_is_an_interrupted_journal(
        shop_url: str, spec: Experiment, tmp_path: Path) -> None:
    journal = Journal.open(tmp_path, spec, "scripted")
    target = Scripted(shop_url, inject="break")
    running = asyncio.create_task(experiments.run(
        target, spec, RESILIENT_SWITCHES, "AFTER", quiet, journal=journal))  # type: ignore[arg-type]
    await asyncio.wait_for(target.injected.wait(), 10)
    running.cancel()  # what asyncio.run does on Ctrl-C
    with pytest.raises(asyncio.CancelledError):
        await running
    assert target.calls[-1] == "restore" and not FakeShop.failing
    journal.end("interrupted", "by Ctrl-C")
    data = _journal(journal)
    assert data["status"] == "interrupted" and data["runs"][0]["status"] == "interrupted"
    assert data["verdict"] == "fail"


class HaltAfter:
    """Asks for a halt once the fault is on."""

    def __init__(self) -> None:
        self.on = self.off = False

    def stop_requested(self) -> Stop | None:
        return Stop("halted", "halted by a test") if self.on else None

    def fault_on(self, spec: Experiment, switches: Switches) -> None:
        self.on = True

    def fault_details(self, details: dict[str, str]) -> None:
        pass

    def fault_off(self) -> None:
        self.off = True


async def test_a_halt_waits_for_an_inject_in_progress_then_restores(
        shop_url: str, spec: Experiment, tmp_path: Path) -> None:
    journal = Journal.open(tmp_path, spec, "scripted")
    target, stops = Scripted(shop_url, inject="hang"), HaltAfter()
    result = await experiments.run(target, spec, RESILIENT_SWITCHES, "AFTER", quiet,  # type: ignore[arg-type]
                                   journal=journal, stops=stops)
    assert result.status == "halted" and result.reason == "halted by a test"
    assert target.calls == ["apply", "reset", "inject", "inject returned", "restore"]
    assert stops.off, "the persisted fault is cleared once restored"
    journal.end()
    data = _journal(journal)
    assert data["status"] == "halted" and data["reason"] == "halted by a test"
    assert not experiments.verdict(journal.runs)


async def test_a_halted_before_does_not_start_after(shop_url: str, spec: Experiment) -> None:
    target, stops = Scripted(shop_url, inject="hang"), HaltAfter()
    runs = await experiments.compare(target, spec, quiet, stops=stops)  # type: ignore[arg-type]
    assert [r.label for r in runs] == ["BEFORE"] and runs[0].status == "halted"


# Guardrails ---------------------------------------------------------------------------------

GUARDED = EXPERIMENT.replace("fault: {name: db-outage, hold: 1}", "fault: {name: db-outage, "
                             "hold: 6}").replace("duration: 3}", "duration: 9}")


def _guarded(tmp_path: Path, abort: str) -> Experiment:
    path = tmp_path / "guarded.yaml"
    path.write_text(GUARDED + f"abort: {abort}\n")
    return load(path).resolve(source=path)


async def test_a_guardrail_on_failed_requests_restores_at_once_and_aborts(
        shop_url: str, tmp_path: Path) -> None:
    spec = _guarded(tmp_path, "{max_failed_requests_in_window: {requests: 2, seconds: 5}}")
    journal = Journal.open(tmp_path, spec, "scripted")
    target = Scripted(shop_url, inject="break")
    started = time.monotonic()
    result = await experiments.run(target, spec, RESILIENT_SWITCHES, "AFTER", quiet,  # type: ignore[arg-type]
                                   journal=journal)
    assert time.monotonic() - started < 8, "stopped before the hold (6 s) was over"
    assert target.calls[-1] == "restore" and not FakeShop.failing
    assert result.status == "aborted" and not result.passed
    assert "max_failed_requests_in_window" in (result.reason or "")
    [check] = result.checks
    assert check.name == "guardrail_failed_requests_in_window" and check.tolerance == 2
    assert isinstance(check.measured, int) and check.measured > 2
    assert result.failed > 2 and result.timeline and result.fault_window is not None
    journal.end()
    data = _journal(journal)
    assert data["status"] == "aborted" and "guardrail" in data["reason"]
    assert 'name="guardrail_failed_requests_in_window"' in (journal.folder / "junit.xml"
                                                            ).read_text()


async def test_a_guardrail_on_latency(shop_url: str, tmp_path: Path) -> None:
    spec = _guarded(tmp_path, "{max_p99_ms_in_window: {ms: 300, seconds: 3}}")
    target = Scripted(shop_url, inject="nothing")
    running = asyncio.create_task(experiments.run(
        target, spec, RESILIENT_SWITCHES, "AFTER", quiet))  # type: ignore[arg-type]
    await asyncio.wait_for(target.injected.wait(), 10)
    FakeShop.slow = 0.5  # the shop gets slow under the fault
    result = await running
    assert result.status == "aborted" and "p99" in (result.reason or "")
    [check] = result.checks
    assert check.name == "guardrail_p99_in_window" and check.unit == " ms"
    assert isinstance(check.measured, float) and check.measured > 300


async def test_a_before_stopped_by_its_guardrail_does_not_gate(
        shop_url: str, tmp_path: Path) -> None:
    """The fragile settings hurting is the point: BEFORE aborted by its guardrail, then AFTER
    runs and decides the verdict."""
    spec = _guarded(tmp_path, "{max_failed_requests_in_window: {requests: 2, seconds: 5}}")
    target = Scripted(shop_url, inject="break")
    before = await experiments.run(target, spec, spec.fragile, "BEFORE", quiet,  # type: ignore[arg-type]
                                   gating=False)
    assert before.status == "aborted"
    after = experiments.RunResult("guarded", "AFTER", RESILIENT_SWITCHES.model_dump(),
                                  "db-outage", 1, 6, checks=[], steady_before=True)
    after.checks = [experiments.Check("failed_requests", "<=", 0, 0, True)]
    assert experiments.verdict([before, after])
    assert not experiments.verdict([before, experiments.RunResult(
        "guarded", "AFTER", {}, "db-outage", 1, 6, status="aborted", reason="guardrail")])


def test_false_answers_cannot_be_a_guardrail(tmp_path: Path) -> None:
    path = tmp_path / "guarded.yaml"
    path.write_text(GUARDED + "abort: {max_false_answers: 0}\n")
    with pytest.raises(LabError, match=r"abort\.max_false_answers: false answers cannot be a "
                                       r"guardrail: they are known only after the drain"):
        load(path)
