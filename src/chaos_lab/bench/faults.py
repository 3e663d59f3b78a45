"""The bench's ``faults`` part: every experiment of the catalog (its short preset, the
resilient settings) run by the experiment runner on the bench's lab, and per fault what the
customer saw while it was on: the p50 and p99 latency of the requests started during the
fault (the traffic generator's, failures at their timeout), failed requests, lost orders and
the verdict of the experiment's own hypothesis. Issue 14's goal is printed beside them:
p99 <= 1 s and p50 <= 20 ms during every fault."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chaos_lab import experiment as experiments
from chaos_lab import report
from chaos_lab.experiment import RunResult
from chaos_lab.local.lab import Lab
from chaos_lab.model import EXPERIMENTS_DIR, RESILIENT_SWITCHES, catalog, load
from chaos_lab.targets.base import Say
from chaos_lab.targets.local import LocalTarget

GOAL_P50_MS = 20.0
GOAL_P99_MS = 1000.0


@dataclass(frozen=True)
class FaultRow:
    """One experiment's AFTER run, as the bench shows it."""

    experiment: str
    fault: str
    p50_ms: float | None  # during the fault (None: no request started in it)
    p99_ms: float | None
    failed_requests: int
    lost_orders: int
    accepted_orders: int
    verdict: str  # holds, violated: <what>, aborted

    @classmethod
    def of(cls, run: RunResult) -> FaultRow:
        if run.status == "aborted" and not run.steady_before:
            verdict = "aborted (steady state before not met)"
        elif run.status != "completed":
            verdict = f"{run.status} ({run.reason})"
        elif run.passed:
            verdict = "holds"
        else:
            verdict = "violated: " + ", ".join(f"{c.title} {c.shown(c.measured)}"
                                               for c in run.checks if not c.passed)
        return cls(run.experiment, run.fault, run.p50_during_fault_ms, run.p99_during_fault_ms,
                   run.failed_requests, run.lost, run.accepted, verdict)

    @property
    def goal_met(self) -> bool:
        return (self.p50_ms is not None and self.p99_ms is not None
                and self.p50_ms <= GOAL_P50_MS and self.p99_ms <= GOAL_P99_MS
                and self.failed_requests == 0 and self.lost_orders == 0)


async def measure(lab: Lab, say: Say = print, preset: str = "short",
                  folder: Path = EXPERIMENTS_DIR,
                  report_dir: Path | None = None) -> list[FaultRow]:
    """Each catalog experiment once, resilient settings, in the catalog's order; each run's
    journal under ``report_dir`` (default: the lab's ``bench-faults/``)."""
    target = LocalTarget(lab)
    journals = report_dir or lab.root / "bench-faults"
    rows = []
    for path in catalog(folder).values():
        spec = load(path).resolve(preset, source=path)
        run = await experiments.run(target, spec, RESILIENT_SWITCHES, "AFTER", say)
        report.write([run], journals)
        row = FaultRow.of(run)
        say(f"faults: {row.experiment}: p50 {_ms(row.p50_ms)}, p99 {_ms(row.p99_ms)} during "
            f"the fault; {row.verdict}")
        rows.append(row)
    return rows


def markdown(rows: list[FaultRow], preset: str = "short") -> list[str]:
    """The part's section for BENCHMARKS.md (lines, no trailing newline)."""
    met = sum(1 for r in rows if r.goal_met)
    lines = [f"### During each fault (catalog, {preset} preset, resilient settings)", "",
             "Latency of the requests started during the fault (+5 s), as the traffic "
             "generator saw them, failures at their timeout.", "",
             "| fault | p50 ms | p99 ms | failed requests | lost orders | verdict | goal |",
             "| --- | ---: | ---: | ---: | ---: | --- | --- |"]
    for r in rows:
        name = r.fault if r.fault == r.experiment else f"{r.experiment} ({r.fault})"
        lines.append(f"| {name} | {_number(r.p50_ms)} | {_number(r.p99_ms)} | "
                     f"{r.failed_requests} | {r.lost_orders} of {r.accepted_orders} | "
                     f"{r.verdict} | {'met' if r.goal_met else 'NOT met'} |")
    lines += ["", f"Goal (p99 <= {GOAL_P99_MS / 1000:g} s and p50 <= {GOAL_P50_MS:g} ms during "
                  f"every fault, no failure, no lost order): **met by {met} of {len(rows)}**"]
    return lines


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g} ms"
