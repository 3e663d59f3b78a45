"""What an experiment leaves behind: the before/after table, a JSON result, a PNG timeline."""

from __future__ import annotations

import json
import time
from pathlib import Path

from matplotlib.figure import Figure
from rich.table import Table

from chaos_lab.experiment import RunResult

ROWS: list[tuple[str, str]] = [
    ("reads ok (database)", "read_ok"),
    ("reads served from cache", "read_cache"),
    ("reads failed", "read_fail"),
    ("writes confirmed (201)", "write_ok"),
    ("writes queued (202)", "write_queued"),
    ("writes sold out (409)", "write_409"),
    ("writes failed", "write_fail"),
]

COLOURS = {"read_ok": "#2e7d32", "read_cache": "#81c784", "read_fail": "#c62828",
           "write_ok": "#1565c0", "write_queued": "#64b5f6", "write_409": "#ffb300",
           "write_other": "#8d6e63", "write_fail": "#c62828"}


def _recovery(run: RunResult) -> str:
    if run.recovery_seconds is None:
        return "never (no recovery without a restart)"
    return f"{run.recovery_seconds:g} s"


def table(runs: list[RunResult]) -> Table:
    title = f"{runs[0].experiment}: " + " vs ".join(r.label for r in runs)
    out = Table(title=title)
    out.add_column("")
    for run in runs:
        out.add_column(f"{run.label}\n{_switches(run)}", justify="right")
    for name, key in ROWS:
        out.add_row(name, *(str(r.counts.get(key, 0)) for r in runs))
    out.add_row("orders accepted (201/202)", *(str(r.accepted) for r in runs))
    out.add_row("orders lost", *(_lost(r) for r in runs))
    out.add_row("stock start -> end", *(f"{r.stock_start} -> {r.stock_end}" for r in runs))
    out.add_row("stock == start - confirmed", *(_yes(r.stock_consistent) for r in runs))
    out.add_row("queue / DLQ after", *(f"{r.queue} / {r.dlq}" for r in runs))
    if any(r.drained_seconds is not None for r in runs):
        out.add_row("queue + DLQ empty after restore",
                    *("-" if r.drained_seconds is None else f"{r.drained_seconds:g} s"
                      for r in runs))
    out.add_row("healthy after, no restart", *(_yes(r.healthy_after) for r in runs))
    out.add_row("fault to last failure", *(_recovery(r) for r in runs))
    return out


def _lost(run: RunResult) -> str:
    failed_writes = run.counts.get("write_fail", 0)
    text = str(run.lost)
    if failed_writes:
        text += f" (+{failed_writes} failed writes never taken)"
    return text


def _yes(value: bool | None) -> str:
    return {True: "yes", False: "NO", None: "unknown"}[value]


def _switches(run: RunResult) -> str:
    s = run.settings
    return (f"proxy={s.get('SHOP_ENABLE_PROXY', 'true')} "
            f"degradation={s.get('SHOP_ENABLE_DEGRADATION', 'true')}")


def write(runs: list[RunResult], report_dir: Path) -> Path:
    """JSON + PNG under ``report_dir/<experiment>-<time>/``; returns that folder."""
    folder = report_dir / f"{runs[0].experiment}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").write_text(json.dumps(
        [{**r.summary(), "timeline": r.timeline} for r in runs], indent=2))
    plot(runs, folder / "timeline.png")
    return folder


def plot(runs: list[RunResult], path: Path) -> None:
    """Per-second outcomes, reads above and writes below, one column per run."""
    fig = Figure(figsize=(7 * len(runs), 6))  # no pyplot: no display, no global state
    axes = fig.subplots(2, len(runs), sharex=True, squeeze=False)
    for column, run in enumerate(runs):
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
            end = run.fault_at + (run.hold if run.hold else 1)
            ax.axvspan(run.fault_at, end, color="grey", alpha=0.25, label="fault")
            ax.set_ylabel(f"{kind}s per second")
            ax.legend(loc="upper right", fontsize=7)
            if row == 0:
                ax.set_title(f"{run.experiment} {run.label} ({_switches(run)})")
        axes[1][column].set_xlabel("seconds since the traffic started")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
