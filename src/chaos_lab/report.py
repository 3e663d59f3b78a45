"""What an experiment leaves behind: the before/after table with the hypothesis' tolerances
and the verdict, the journal (``result.json``, and ``junit.xml`` for CI: one testcase per
tolerance per run), and a PNG timeline (outcomes, latency, breakers)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from matplotlib.figure import Figure
from rich.table import Table

from chaos_lab.experiment import RunResult, verdict
from chaos_lab.model import Check

ROWS: list[tuple[str, str]] = [  # every try
    ("reads ok (database)", "read_ok"),
    ("reads served from cache", "read_cache"),
    ("reads failed", "read_fail"),
    ("writes confirmed (201)", "write_ok"),
    ("writes accepted (202)", "write_queued"),
    ("writes sold out (409)", "write_409"),
    ("writes failed (5xx, timeout)", "write_fail"),
]
ANSWER_CLASSES = ("201", "202", "409", "4xx", "503", "unknown")

COLOURS = {"read_ok": "#2e7d32", "read_cache": "#81c784", "read_fail": "#c62828",
           "write_ok": "#1565c0", "write_queued": "#64b5f6", "write_409": "#ffb300",
           "write_other": "#8d6e63", "write_fail": "#c62828"}


def _recovery(run: RunResult) -> str:
    if run.recovery_seconds is None:
        return "never (no recovery without a restart)"
    return f"{run.recovery_seconds:g} s"


def table(runs: list[RunResult]) -> Table:
    title = (f"{runs[0].experiment} ({runs[0].preset}): " + " vs ".join(r.label for r in runs)
             + f" -- verdict: {'PASS' if verdict(runs) else 'FAIL'}")
    out = Table(title=title)
    out.add_column("")
    for run in runs:
        out.add_column(f"{run.label}\n{_switches(run)}", justify="right")
    for name, key in ROWS:
        out.add_row(name, *(str(r.counts.get(key, 0)) for r in runs))
    out.add_row("retries (same key and body)", *(str(r.retries) for r in runs))
    out.add_row("requests failed after every try", *(str(r.failed) for r in runs))
    out.add_row("answers " + " / ".join(ANSWER_CLASSES), *(_answers(r) for r in runs))
    out.add_row("orders accepted (201/202)", *(str(r.accepted) for r in runs))
    out.add_row("orders lost", *(str(r.lost) for r in runs))
    out.add_row("stock start -> end", *(f"{r.stock_start} -> {r.stock_end}" for r in runs))
    out.add_row("stock == start - confirmed", *(_yes(r.stock_consistent) for r in runs))
    out.add_row("queue / DLQ after", *(f"{r.queue} / {r.dlq}" for r in runs))
    if any(r.drained_seconds is not None for r in runs):
        out.add_row("queue drained (after the restore)",
                    *("-" if r.drained_seconds is None else f"{r.drained_seconds:g} s"
                      for r in runs))
    out.add_row("healthy after, no restart", *(_yes(r.healthy_after) for r in runs))
    out.add_row("fault to last failure", *(_recovery(r) for r in runs))
    out.add_row("latency during the fault, p50 / p99", *(_during(r) for r in runs))
    if any(r.surge is not None for r in runs):
        out.add_row("surge: capacity / offered / goodput, orders/s", *(_surge(r) for r in runs))
        out.add_row("surge: admitted p99 / shed p99 / longest wait",
                    *(_surge_waits(r) for r in runs))
        out.add_row("settled after the surge", *(
            "-" if r.surge is None else _seconds(r.surge.settle_seconds) for r in runs))
    if any(r.drain_ceiling is not None or r.drain_rate is not None for r in runs):
        out.add_row("backlog drain rate / worker's quiet ceiling, orders/s", *(
            f"{_num(r.drain_rate)} / {_num(r.drain_ceiling)}" for r in runs))
    out.add_section()
    for check in _checks_of(runs):
        out.add_row(f"{check.title} ({check.expected})",
                    *(_judged(c) if (c := _check(r, check.name)) else "-" for r in runs))
    out.add_row("hypothesis", *(_run_verdict(r) for r in runs))
    return out


def _checks_of(runs: list[RunResult]) -> list[Check]:
    return max((r.checks for r in runs), key=len)


def _check(run: RunResult, name: str) -> Check | None:
    return next((c for c in run.checks if c.name == name), None)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g} ms"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:g} s"


def _surge(run: RunResult) -> str:
    if run.surge is None:
        return "-"
    s = run.surge
    return f"{s.capacity:g} / {s.offered:g} / {s.goodput:g} ({_num(s.goodput_ratio)} x)"


def _surge_waits(run: RunResult) -> str:
    if run.surge is None:
        return "-"
    s = run.surge
    return f"{_ms(s.admitted_p99_ms)} / {_ms(s.shed_p99_ms)} / {_ms(s.wait_ms)}"


def _during(run: RunResult) -> str:
    """The customer's wait while the fault was on (measured whether or not it is judged)."""
    return f"{_ms(run.p50_during_fault_ms)} / {_ms(run.p99_during_fault_ms)}"


def _judged(check: Check) -> str:
    mark = "[green]ok[/green]" if check.passed else "[red]FAIL[/red]"
    return f"{check.shown(check.measured)} {mark}"


def _run_verdict(run: RunResult) -> str:
    if run.aborted:
        return "[red]ABORTED[/red] (steady state before not met)"
    if run.passed:
        return "[green]holds[/green]"
    return "[red]VIOLATED[/red]" + ("" if run.gating else " (expected: BEFORE)")


def gameday_table(results: list[tuple[str, str, list[RunResult]]]) -> Table:
    """One row per experiment: its fault, each run's verdict with what it violated."""
    out = Table(title="gameday: " + ("PASS" if all(verdict(r) for *_, r in results)
                                     else "FAIL"))
    for column in ("experiment", "fault", "BEFORE (fragile)", "AFTER (resilient)", "verdict"):
        out.add_column(column)
    for name, fault, runs in results:
        by_label = {r.label: r for r in runs}
        out.add_row(name, fault, *(_brief(by_label.get(label)) for label in ("BEFORE", "AFTER")),
                    "[green]PASS[/green]" if verdict(runs) else "[red]FAIL[/red]")
    return out


def _brief(run: RunResult | None) -> str:
    if run is None:
        return "-"
    if run.aborted:
        return "[red]aborted[/red]: steady state before not met"
    failed = [f"{c.title} {c.shown(c.measured)}" for c in run.checks if not c.passed]
    return "[green]holds[/green]" if not failed else "[red]violated[/red]: " + ", ".join(failed)


def _answers(run: RunResult) -> str:
    """Every order try's answer, by class, as the audit held them against the database."""
    if not run.answers:
        return "not audited"
    return " / ".join(str(run.answers.get(c, 0)) for c in ANSWER_CLASSES)


def _yes(value: bool | None) -> str:
    return {True: "yes", False: "NO", None: "unknown"}[value]


def _switches(run: RunResult) -> str:
    return " ".join(f"{name}={str(on).lower()}" for name, on in run.settings.items())


def write(runs: list[RunResult], report_dir: Path) -> Path:
    """result.json + junit.xml + timeline.png under ``report_dir/<experiment>-<time>/``;
    returns that folder."""
    folder = report_dir / f"{runs[0].experiment}-{time.strftime('%Y%m%d-%H%M%S')}"
    suffix = 1
    while folder.exists():  # two runs in the same second (gameday): never overwrite
        suffix += 1
        folder = folder.with_name(f"{folder.name.split('~')[0]}~{suffix}")
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps(journal(runs), indent=2))
    junit(runs).write(folder / "junit.xml", encoding="unicode", xml_declaration=True)
    plot(runs, folder / "timeline.png")
    return folder


def journal(runs: list[RunResult]) -> dict[str, Any]:
    return {"experiment": runs[0].experiment, "preset": runs[0].preset,
            "target": runs[0].target, "verdict": "pass" if verdict(runs) else "fail",
            "runs": [{**r.summary(), "timeline": r.timeline, "latency": r.latency,
                      "breakers": r.breakers} for r in runs]}


def junit(runs: list[RunResult]) -> ET.ElementTree[ET.Element]:
    """One testsuite per run, one testcase per tolerance. A violated tolerance of a run that
    does not gate (BEFORE in a comparison) is reported as skipped, with the evidence: it is
    expected to fail and must not turn CI red."""
    suites = ET.Element("testsuites", name=f"chaos-shop {runs[0].experiment}")
    for run in runs:
        name = f"{run.experiment}.{run.label}"
        failures = sum(1 for c in run.checks if not c.passed) if run.gating else 0
        suite = ET.SubElement(suites, "testsuite", name=name, tests=str(len(run.checks)),
                              failures=str(failures),
                              skipped=str(0 if run.gating else
                                          sum(1 for c in run.checks if not c.passed)))
        properties = ET.SubElement(suite, "properties")
        for key in ("p50_during_fault_ms", "p99_during_fault_ms", "false_answers", "retries"):
            value = getattr(run, key)
            ET.SubElement(properties, "property", name=key,
                          value="" if value is None else f"{value:g}")
        for kind, count in run.answers.items():
            ET.SubElement(properties, "property", name=f"answers_{kind}", value=str(count))
        for check in run.checks:
            case = ET.SubElement(suite, "testcase", classname=name, name=check.name)
            evidence = (f"{check.title}: measured {check.shown(check.measured)}, tolerance "
                        f"{check.expected} ({_switches(run)}, {run.preset} preset, "
                        f"{run.target})")
            if run.aborted:
                evidence += f"; {run.aborted}"
            if check.passed:
                ET.SubElement(case, "system-out").text = evidence
            elif run.gating:
                ET.SubElement(case, "failure", message=evidence, type="ToleranceViolated")
            else:
                ET.SubElement(case, "skipped", message="expected of the fragile settings: "
                                                      + evidence)
    ET.indent(suites)
    return ET.ElementTree(suites)


def plot(runs: list[RunResult], path: Path) -> None:
    """Per second, one column per run: reads, writes (outcomes stacked), then the latency the
    customer waited (p50 and p99 of the requests started that second) with the breakers'
    changes of state marked (polled from each service's /health/deep once a second)."""
    fig = Figure(figsize=(7 * len(runs), 9))  # no pyplot: no display, no global state
    axes = fig.subplots(3, len(runs), sharex=True, squeeze=False)
    for column, run in enumerate(runs):
        window = run.fault_window or (run.fault_at, run.fault_at + (run.hold or 1))
        for row, kind in enumerate(("read", "write")):
            ax = axes[row][column]
            labels = [k for k in COLOURS if k.startswith(kind)]
            seconds = list(range(len(run.timeline)))
            bottom = [0] * len(seconds)
            for label in labels:
                values = [second.get(label, 0) for second in run.timeline]
                if any(values):
                    ax.bar(seconds, values, bottom=bottom, width=1.0, align="edge",
                           color=COLOURS[label],
                           label=label.replace("_", " "))
                    bottom = [b + v for b, v in zip(bottom, values, strict=True)]
            ax.axvspan(*window, color="grey", alpha=0.25, label="fault (+5 s)")
            ax.set_ylabel(f"{kind}s per second")
            ax.legend(loc="upper right", fontsize=7)
            if row == 0:
                ax.set_title(f"{run.experiment} {run.label} ({_switches(run)}): "
                             + ("holds" if run.passed else "VIOLATED"))
        _plot_latency(axes[2][column], run, window)
        axes[2][column].set_xlabel("seconds since the traffic started")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


BREAKER_COLOURS = {"open": "#c62828", "half-open": "#ffb300", "closed": "#2e7d32"}


def _plot_latency(ax: Any, run: RunResult, window: tuple[float, float]) -> None:
    seconds = [s + 0.5 for s, row in enumerate(run.latency) if row]
    for key, style in (("p50", "-"), ("p99", "--")):
        ax.plot(seconds, [row[key] for row in run.latency if row], style, color="#37474f",
                label=key, linewidth=1.2)
    ax.axvspan(*window, color="grey", alpha=0.25)
    ax.set_yscale("symlog", linthresh=10)
    ax.set_ylabel("latency, ms")
    shown: set[str] = set()
    seen: set[str] = set()
    for change in run.breakers:
        if change["service"] not in seen:  # its state when the watch began: not a change
            seen.add(change["service"])
            continue
        label = f"breaker {change['state']}"
        ax.axvline(change["t"], color=BREAKER_COLOURS.get(change["state"], "black"),
                   linestyle=":", linewidth=1.2, label=None if label in shown else label)
        ax.annotate(change["service"], (change["t"], 1), xycoords=("data", "axes fraction"),
                    fontsize=6, rotation=90, va="top")
        shown.add(label)
    ax.legend(loc="upper right", fontsize=7)
