"""The chaos lab end to end: the short preset of both experiments, fragile then resilient,
against the whole shop as local processes. The figures asserted are the issue's."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos_lab import experiment as experiments
from chaos_lab import report
from chaos_lab.local.lab import Lab
from chaos_lab.targets.local import LocalTarget


@pytest.fixture(scope="module")
def lab(work_dir: Path) -> Iterator[LocalTarget]:
    lab = Lab(work_dir / "lab")
    lab.up(log=lambda *_: None)
    yield LocalTarget(lab)
    lab.down(log=lambda *_: None)


async def test_failover_before_never_recovers_after_loses_nothing(lab: LocalTarget,
                                                                  tmp_path: Path) -> None:
    spec = experiments.experiment("failover", "short")
    before, after = await experiments.compare(lab, spec, say=lambda *_: None)

    assert before.counts["write_fail"] > 0 and before.counts["read_fail"] > 0
    assert before.recovery_seconds is None and not before.healthy_after

    assert after.counts["write_fail"] == 0
    assert after.counts["read_fail"] <= 2
    assert after.lost == 0 and after.stock_consistent
    assert after.healthy_after and after.steady_before
    assert after.dlq == 0 and after.queue == 0
    assert after.passed and not before.passed and experiments.verdict([before, after])

    folder = report.write([before, after], tmp_path)
    assert (folder / "timeline.png").stat().st_size > 10_000
    assert (folder / "result.json").exists()


async def test_outage_before_fails_after_loses_nothing(lab: LocalTarget) -> None:
    spec = experiments.experiment("db-outage", "short")
    before, after = await experiments.compare(lab, spec, say=lambda *_: None)

    assert before.counts["write_fail"] > 0  # every failed write is an order never taken
    assert before.counts["read_fail"] > 0

    assert after.counts["read_fail"] == 0 and after.counts["write_fail"] == 0
    assert after.counts["read_cache"] > 0 and after.counts["write_queued"] > 0
    assert after.lost == 0 and after.stock_consistent
    assert after.decided["pending"] == 0 and after.decided["missing"] == 0
    assert after.queue == 0 and after.dlq == 0
    assert after.drained_seconds is not None and after.drained_seconds <= 30
    assert after.healthy_after
    assert after.passed and not before.passed, [c for c in after.checks if not c.passed]
