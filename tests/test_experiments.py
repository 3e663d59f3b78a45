"""Experiments as files, and their verdict.

The schema and the journal need no lab; the verdict is proven both ways through the command
line against one real lab for the module: the fragile settings of ``failover`` violate the
hypothesis (exit 1), the resilient ones hold it (exit 0), and ``gameday`` runs the catalog
into one verdict table. Malformed files exit 2, before any lab is touched."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree as ET

import asyncpg
import pytest
from rich.console import Console
from typer.testing import CliRunner

from chaos_lab import experiment as experiments
from chaos_lab import report
from chaos_lab.cli import app
from chaos_lab.experiment import RunResult
from chaos_lab.halt import RunState
from chaos_lab.local.lab import Lab
from chaos_lab.model import (
    EXPERIMENTS_DIR,
    Fault,
    Hypothesis,
    Measured,
    Switches,
    catalog,
    implementation,
    judge,
    load,
)
from chaos_lab.processes import LabError, free_port, running
from chaos_lab.targets.base import Say

runner = CliRunner()

GOOD = """\
name: mine
fault: {name: db-outage, hold: 4}
timing: {fault_at: 2, duration: 10}
fragile: {proxy: true, degradation: false}
hypothesis: {max_failed_requests: 0, max_p99_latency_ms: 500, max_recovery_seconds: 1}
presets:
  short: {timing: {duration: 8}, hypothesis: {max_failed_requests: 2}}
"""


# The files ---------------------------------------------------------------------------------


def test_the_catalog_files_are_valid_with_every_preset() -> None:
    names = catalog()
    assert {"failover", "db-outage"} <= set(names)
    for name, path in names.items():
        spec = load(path)
        assert spec.name == name and spec.description
        assert spec.hypothesis.max_lost_orders == 0
        for preset in ("default", *spec.presets):
            resolved = experiments.experiment(name, preset)
            assert resolved.fault_at < resolved.duration
    short = experiments.experiment("failover", "short")
    assert (short.fault_at, short.duration, short.fragile) == (6, 24, Switches(proxy=False,
                                                                                degradation=False))
    outage = experiments.experiment("db-outage")
    assert (outage.fault_at, outage.hold, outage.duration) == (30, 180, 270)


def test_a_file_of_ones_own_and_its_preset(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(GOOD)
    spec = experiments.experiment(str(path), "short", scale=2)
    assert spec.fault is Fault.DB_OUTAGE and spec.hold == 4 and spec.duration == 8
    assert spec.hypothesis.max_failed_requests == 2  # the preset's
    assert spec.hypothesis.max_p99_latency_ms == 500  # the file's
    assert spec.traffic.reads_per_second == 6  # 3 (the default) x 2


def test_a_malformed_file_says_file_field_and_what_is_wrong_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(GOOD.replace("db-outage", "meteor").replace("fault_at: 2", "fault_at: -1")
                    .replace("max_failed_requests: 0,", "max_failed: 0,")
                    .replace("{duration: 8}", "{duraton: 8}"))
    result = runner.invoke(app, ["experiment", "run", str(path), "--lab-dir", str(tmp_path / "no")])
    assert result.exit_code == 2
    message = result.output
    assert str(path) in message
    assert "fault.name: Input should be 'failover', 'db-outage', 'brownout'" in message
    assert "timing.fault_at: Input should be greater than or equal to 0" in message
    assert "hypothesis.max_failed_requests: missing (required)" in message
    assert "hypothesis.max_failed: unknown field" in message
    assert not (tmp_path / "no").exists(), "no lab was started for a file that is wrong"

    path.write_text(GOOD.replace("{duration: 8}", "{duraton: 8}"))
    result = runner.invoke(app, ["experiment", "run", str(path)])
    assert result.exit_code == 2 and "presets.short.timing.duraton: unknown field" in result.output
    path.write_text(GOOD.replace("fault_at: 2", "fault_at: 9"))
    result = runner.invoke(app, ["experiment", "run", str(path)])
    assert result.exit_code == 2 and "the fault ends at 13s" in result.output
    path.write_text("name: [unclosed")
    result = runner.invoke(app, ["experiment", "run", str(path)])
    assert result.exit_code == 2 and "not valid YAML" in result.output
    for args in (["nope"], ["failover", "--preset", "long"], ["failover", "--scale", "0"]):
        assert runner.invoke(app, ["experiment", "run", *args]).exit_code == 2, args


def test_list_shows_name_fault_and_description() -> None:
    result = runner.invoke(app, ["experiment", "list"])
    assert result.exit_code == 0
    for name, path in catalog().items():
        assert name in result.output
        assert load(path).description.split()[0] in result.output


# The model ---------------------------------------------------------------------------------


def test_one_unknown_fault_error_and_a_fault_a_target_lacks() -> None:
    registry = {Fault.FAILOVER: "ok"}
    assert implementation(registry, "failover", "test") == "ok"
    with pytest.raises(LabError, match="unknown fault 'meteor'; the catalog has failover"):
        implementation(registry, "meteor", "test")
    with pytest.raises(LabError, match="the test target does not implement the db-outage"):
        implementation(registry, Fault.DB_OUTAGE, "test")


def test_switches_are_parsed_once() -> None:
    assert Switches.from_env({}) == Switches()
    assert Switches.from_env({"SHOP_ENABLE_PROXY": "False", "SHOP_ENABLE_DEGRADATION": "0"}) \
        == Switches(proxy=False, degradation=False)
    assert Switches(degradation=False).env() == {"SHOP_ENABLE_PROXY": "true",
                                                 "SHOP_ENABLE_DEGRADATION": "false"}
    with pytest.raises(LabError, match="is not a boolean"):
        Switches.from_env({"SHOP_ENABLE_PROXY": "maybe"})


def test_judge_every_tolerance_and_unmeasured_fails() -> None:
    h = Hypothesis(max_failed_requests=2, max_p99_latency_ms=1000, max_recovery_seconds=5)
    good = Measured(failed_requests=2, lost_orders=0, p99_latency_ms=999, recovery_seconds=0,
                    stock_consistent=True, dlq=0, healthy_after=True)
    assert all(c.passed for c in judge(h, good))
    bad = Measured(failed_requests=3, lost_orders=1, p99_latency_ms=None, recovery_seconds=None,
                   stock_consistent=None, dlq=-1, healthy_after=False, false_answers=None)
    assert not any(c.passed for c in judge(h, bad))


def test_p50_during_the_fault_is_judged_only_when_the_hypothesis_sets_it() -> None:
    h = Hypothesis(max_failed_requests=0, max_p99_latency_ms=1000, max_recovery_seconds=5)
    slow_median = Measured(0, 0, 900.0, 0.0, True, 0, True, p50_latency_ms=800.0)
    assert "p50_latency_during_fault" not in [c.name for c in judge(h, slow_median)]
    assert all(c.passed for c in judge(h, slow_median))  # absent: measured, not judged

    h = Hypothesis(max_failed_requests=0, max_p99_latency_ms=1000, max_p50_latency_ms=20,
                   max_recovery_seconds=5)
    checks = {c.name: c for c in judge(h, slow_median)}
    assert not checks["p50_latency_during_fault"].passed
    assert checks["p50_latency_during_fault"].expected == "<= 20 ms"
    assert [n for n, c in checks.items() if not c.passed] == ["p50_latency_during_fault"]
    fast = Measured(0, 0, 900.0, 0.0, True, 0, True, p50_latency_ms=20.0)
    assert all(c.passed for c in judge(h, fast))
    unmeasured = Measured(0, 0, 900.0, 0.0, True, 0, True, p50_latency_ms=None)
    assert not {c.name: c for c in judge(h, unmeasured)}["p50_latency_during_fault"].passed


def test_a_file_may_set_the_p50_tolerance_and_its_preset_may_change_it(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(GOOD.replace("max_recovery_seconds: 1}",
                                 "max_recovery_seconds: 1, max_p50_latency_ms: 20}")
                    .replace("{max_failed_requests: 2}",
                             "{max_failed_requests: 2, max_p50_latency_ms: 50}"))
    assert experiments.experiment(str(path)).hypothesis.max_p50_latency_ms == 20
    assert experiments.experiment(str(path), "short").hypothesis.max_p50_latency_ms == 50
    assert experiments.experiment("failover").hypothesis.max_p50_latency_ms == 20  # the goal
    path.write_text(GOOD.replace("max_recovery_seconds: 1}",
                                 "max_recovery_seconds: 1, max_p50_latency_ms: 0}"))
    with pytest.raises(LabError, match=r"hypothesis\.max_p50_latency_ms: Input should be "
                                       r"greater than 0"):
        experiments.experiment(str(path))


def _run(label: str, gating: bool, failed: int, p50: float = 5.0,
         max_p50: float | None = None) -> RunResult:
    h = Hypothesis(max_failed_requests=0, max_p99_latency_ms=1000, max_recovery_seconds=5,
                   max_p50_latency_ms=max_p50)
    run = RunResult("failover", label, Switches().model_dump(), "failover", 6, 0, gating=gating,
                    counts={"read_fail": failed}, failed=failed, p50_during_fault_ms=p50,
                    p99_during_fault_ms=10.0)
    run.checks = judge(h, Measured(failed, 0, 10.0, 0.0, True, 0, True, p50_latency_ms=p50))
    return run


def test_journal_and_junit_record_every_tolerance(tmp_path: Path) -> None:
    runs = [_run("BEFORE", gating=False, failed=40), _run("AFTER", gating=True, failed=0)]
    assert experiments.verdict(runs)  # BEFORE failing is the point
    folder = report.write(runs, tmp_path)
    journal = json.loads((folder / "result.json").read_text())
    assert journal["verdict"] == "pass"
    before = journal["runs"][0]
    assert before["verdict"] == "fail"
    assert before["checks"][0] == {"name": "failed_requests", "rule": "<=", "tolerance": 0,
                                   "measured": 40, "passed": False, "unit": "",
                                   "unmeasured": "unknown"}
    suites = ET.parse(folder / "junit.xml").getroot()
    assert [s.get("name") for s in suites] == ["failover.BEFORE", "failover.AFTER"]
    assert all(len(s.findall("testcase")) == 8 for s in suites)  # one per tolerance per run
    assert before["p50_during_fault_ms"] == 5.0 and before["p99_during_fault_ms"] == 10.0
    assert {p.get("name"): p.get("value") for p in suites[1].iter("property")} \
        == {"p50_during_fault_ms": "5", "p99_during_fault_ms": "10", "false_answers": "",
            "retries": "0"}  # measured, not judged (no audit in this made-up run)
    assert suites[0].get("failures") == "0" and suites[0].get("skipped") == "1"
    assert suites[1].get("failures") == "0"

    runs[1] = _run("AFTER", gating=True, failed=1)
    assert not experiments.verdict(runs)
    failures = ET.parse(report.write(runs, tmp_path) / "junit.xml").getroot().iter("failure")
    assert ["failed requests: measured 1, tolerance <= 0" in f.get("message", "")
            for f in failures] == [True]


def test_a_p50_over_its_tolerance_fails_the_verdict_and_shows_everywhere(tmp_path: Path) -> None:
    before = _run("BEFORE", gating=False, failed=40)
    runs = [before, _run("AFTER", gating=True, failed=0, p50=19.0, max_p50=20)]
    assert experiments.verdict(runs)
    runs[1] = _run("AFTER", gating=True, failed=0, p50=35.0, max_p50=20)
    assert not experiments.verdict(runs)
    folder = report.write(runs, tmp_path)
    after = json.loads((folder / "result.json").read_text())["runs"][1]
    assert {"name": "p50_latency_during_fault", "rule": "<=", "tolerance": 20,
            "measured": 35.0, "passed": False, "unit": " ms", "unmeasured": "unknown"} \
        in after["checks"]
    suites = ET.parse(folder / "junit.xml").getroot()
    assert len(suites[1].findall("testcase")) == 9
    assert [f.get("message", "").split(" (")[0] for f in suites[1].iter("failure")] \
        == ["p50 latency during fault: measured 35 ms, tolerance <= 20 ms"]
    console = Console(width=200, record=True)
    console.print(report.table(runs))
    text = console.export_text()
    assert "latency during the fault, p50 / p99" in text and "35 ms / 10 ms" in text
    row = next(line for line in text.splitlines() if "p50 latency during fault (<= 20 ms)" in line)
    assert "-" in row and "35 ms FAIL" in row  # BEFORE did not judge it, AFTER did


class Unsteady:
    """A target whose shop does not answer: the fault must not be injected."""

    name = "test"

    def __init__(self) -> None:
        self.entry_url = f"http://127.0.0.1:{free_port()}"
        self.health_urls = [f"{self.entry_url}/products"]
        self.breaker_urls: dict[str, str] = {}
        self.calls: list[str] = []

    async def apply(self, switches: Switches, say: Say) -> None:
        self.calls.append("apply")

    async def reset(self) -> None:
        self.calls.append("reset")

    async def inject(self, fault: Fault, hold: float, say: Say) -> None:
        self.calls.append("inject")

    async def restore(self, fault: Fault, say: Say) -> None:
        self.calls.append("restore")

    async def stock_in_db(self, product_id: int) -> int | None:
        return 100


async def test_no_fault_without_the_steady_state_before() -> None:
    target = Unsteady()
    spec = experiments.experiment("failover", "short")
    result = await experiments.run(target, spec, Switches(), "AFTER",  # type: ignore[arg-type]
                                   say=lambda _: None)
    assert target.calls == ["apply", "reset"]
    assert result.aborted and "steady state before not met" in result.aborted
    assert not experiments.verdict([result])


# The verdict, against the real lab ---------------------------------------------------------


@pytest.fixture(scope="module")
def lab_dir(work_dir: Path) -> Iterator[Path]:
    lab = Lab(work_dir / "lab-experiments")
    lab.up(log=lambda *_: None)
    yield lab.root
    # The CLI runs restarted the services in processes of their own: down stops those too.
    pids = Lab(lab.root).s.pids
    lab.down(log=lambda *_: None)
    left = [name for name, pid in pids.items() if running(pid)]
    assert not left, f"still running after lab down: {left}"


def _journal(report_dir: Path) -> dict[str, object]:
    [path] = report_dir.glob("*/result.json")
    data: dict[str, object] = json.loads(path.read_text())
    return data


def test_fragile_failover_violates_the_hypothesis_and_exits_1(lab_dir: Path,
                                                              tmp_path: Path) -> None:
    result = runner.invoke(app, ["experiment", "run", "failover", "--preset", "short",
                                 "--settings", "fragile", "--lab-dir", str(lab_dir),
                                 "--report-dir", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "verdict: FAIL" in result.output
    journal = _journal(tmp_path)
    assert journal["verdict"] == "fail"
    [run] = journal["runs"]  # type: ignore[misc]
    failed = {c["name"] for c in run["checks"] if not c["passed"]}
    assert {"failed_requests", "recovery_time", "healthy_after"} <= failed
    assert list(ET.parse(next(tmp_path.glob("*/junit.xml"))).getroot().iter("failure"))


def test_resilient_failover_holds_the_hypothesis_and_exits_0(lab_dir: Path,
                                                             tmp_path: Path) -> None:
    result = runner.invoke(app, ["experiment", "run", "failover", "--preset", "short",
                                 "--lab-dir", str(lab_dir), "--report-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "verdict: PASS" in result.output
    [run] = _journal(tmp_path)["runs"]  # type: ignore[misc]
    assert all(c["passed"] for c in run["checks"])
    assert run["latency"] and run["p99_during_fault_ms"] is not None
    assert 0 < run["p50_during_fault_ms"] <= run["p99_during_fault_ms"]
    assert (next(tmp_path.glob("*/timeline.png"))).stat().st_size > 10_000
    assert "failed requests" in next(tmp_path.glob("*/report.html")).read_text()


def test_gameday_runs_the_catalog_into_one_verdict_table(lab_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "catalog"
    folder.mkdir()
    for name in ("failover", "db-outage"):
        shutil.copy(EXPERIMENTS_DIR / f"{name}.yaml", folder)
    result = runner.invoke(app, ["gameday", "--preset", "short", "--experiments-dir", str(folder),
                                 "--lab-dir", str(lab_dir), "--report-dir", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    table = result.output[result.output.index("gameday: PASS"):]
    for name in ("failover", "db-outage"):
        row = next(line for line in table.splitlines() if f" {name} " in line)
        assert "holds" in row and "PASS" in row, row
    assert len(list((tmp_path / "r").glob("*/junit.xml"))) == 2
    [page] = (tmp_path / "r").glob("gameday-*/report.html")
    assert page.read_text().count('<tr class="experiment-row">') == 2
    [outage] = [json.loads(path.read_text())
                for path in (tmp_path / "r").glob("db-outage-*/result.json")]
    states = {change["state"] for change in outage["runs"][0]["breakers"]}
    assert "open" in states, "the breakers opened during the outage (polled /health/deep)"


def test_one_subprocess_runner_turns_every_failure_into_a_lab_error(tmp_path: Path) -> None:
    from chaos_lab.processes import ToolMissing, run

    assert run(["echo", "hi"]).stdout == "hi\n"
    with pytest.raises(ToolMissing, match=r"no-such-tool is not installed .*: needed for x"):
        run([str(tmp_path / "no-such-tool")], missing="needed for x")
    with pytest.raises(LabError, match=r"sleep 5 did not finish within 0\.2s"):
        run(["sleep", "5"], timeout=0.2)
    with pytest.raises(LabError, match=r"failed \(3\): oops"):
        run(["sh", "-c", "echo oops >&2; exit 3"])


# Stopping a run: halt from another terminal, Ctrl-C, a runner killed ------------------------

CHAOS = Path(sys.executable).parent / "chaos-shop"


def _start(lab_dir: Path, report_dir: Path) -> subprocess.Popen[str]:
    """`experiment run db-outage --preset short` in a process of its own: a first terminal."""
    return subprocess.Popen([str(CHAOS), "experiment", "run", "db-outage", "--preset", "short",
                             "--lab-dir", str(lab_dir), "--report-dir", str(report_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_the_fault(lab_dir: Path, run: subprocess.Popen[str]) -> None:
    """Until the run's state says the fault is on and the proxy has lost its target."""
    state = RunState(lab_dir, "local")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        record = state.read()
        if record is not None and record.get("fault") \
                and not _database_through_the_proxy(lab_dir):
            return
        assert run.poll() is None, run.communicate()[0]
        time.sleep(0.2)
    raise AssertionError("the fault was never on")


def _database_through_the_proxy(lab_dir: Path) -> bool:
    async def connect() -> bool:
        try:
            conn = await asyncpg.connect(Lab(lab_dir).bouncer.dsn(with_password=True),
                                         timeout=5)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        await conn.close()
        return True
    return asyncio.run(connect())


def test_a_run_halted_from_another_terminal_restores_and_is_a_halted_journal(
        lab_dir: Path, tmp_path: Path) -> None:
    run = _start(lab_dir, tmp_path)
    _wait_for_the_fault(lab_dir, run)
    halted = subprocess.run([str(CHAOS), "halt", "--lab-dir", str(lab_dir)], capture_output=True,
                            text=True, timeout=120)
    assert halted.returncode == 0, halted.stdout + halted.stderr
    assert "halted: the run restored the fault" in halted.stdout
    output, _ = run.communicate(timeout=120)
    assert run.returncode == 1, output
    assert "HALTED" in output and "verdict: FAIL" in output
    journal = _journal(tmp_path)
    assert journal["status"] == "halted" and "chaos-shop halt" in str(journal["reason"])
    assert _database_through_the_proxy(lab_dir), "restored"
    assert RunState(lab_dir, "local").read() is None
    again = subprocess.run([str(CHAOS), "halt", "--lab-dir", str(lab_dir)], capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 0 and "nothing to halt" in again.stdout


def test_ctrl_c_restores_and_is_an_interrupted_journal(lab_dir: Path, tmp_path: Path) -> None:
    run = _start(lab_dir, tmp_path)
    _wait_for_the_fault(lab_dir, run)
    run.send_signal(signal.SIGINT)
    output, _ = run.communicate(timeout=120)
    assert run.returncode == 130, output
    assert _journal(tmp_path)["status"] == "interrupted"
    assert _database_through_the_proxy(lab_dir), "restored"


def test_a_fault_left_by_a_killed_runner_is_restored_by_halt(lab_dir: Path,
                                                             tmp_path: Path) -> None:
    run = _start(lab_dir, tmp_path)
    _wait_for_the_fault(lab_dir, run)
    run.kill()  # SIGKILL: no restore, no journal's end
    run.communicate(timeout=30)
    assert _journal(tmp_path)["status"] == "running", "what a killed runner leaves"
    refused = subprocess.run([str(CHAOS), "experiment", "run", "db-outage", "--lab-dir",
                              str(lab_dir)], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "a fault is still on the local target" in refused.stdout
    halted = subprocess.run([str(CHAOS), "halt", "--lab-dir", str(lab_dir)], capture_output=True,
                            text=True, timeout=120)
    assert halted.returncode == 0, halted.stdout + halted.stderr
    assert "is gone; restoring the fault it left on: db-outage" in halted.stdout
    assert _database_through_the_proxy(lab_dir)
