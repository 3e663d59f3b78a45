"""The journal of an experiment (``result.json`` in its report folder), as chaostoolkit keeps
one: created before anything runs, saved again as each run starts and ends, and always ended
with a status, whatever the end (``chaos_lab.experiment.STATUSES``):

- completed: every run went to its verdict (which says whether the hypothesis held);
- aborted: a run's steady state before was not met, or a guardrail (the file's ``abort:``
  block) was breached;
- halted: ``chaos-shop halt`` stopped it;
- interrupted: Ctrl-C;
- failed: an error (a lab that did not come up, an inject that raised: the ``error``).

Beside the runs it records when it started and ended, the tool's version and git revision
(when run from a checkout), the target, the settings each run used (their switches) and the
experiment file's sha256. Once it has ended, the folder gets the rest of the report:
``junit.xml``, ``timeline.png`` and ``report.html`` (chaos_lab.html_report).

A gameday keeps a folder of its own (``gameday-<time>/``): ``gameday.json`` (each experiment's
status, verdict and folder) and ``report.html`` with every experiment, saved after each.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from chaos_lab.experiment import (
    ABORTED,
    COMPLETED,
    FAILED,
    HALTED,
    INTERRUPTED,
    RUNNING,
    RunResult,
    verdict,
)
from chaos_lab.model import Experiment

# When runs end differently, the journal's status is the first of these that a run has.
_PRECEDENCE = (FAILED, INTERRUPTED, HALTED, RUNNING, ABORTED, COMPLETED)


@cache
def tool_version() -> str:
    """The installed distribution's version (its package metadata)."""
    try:
        return metadata.version("chaos-shop")
    except metadata.PackageNotFoundError:
        return "unknown"


@cache
def git_revision() -> tuple[str, bool] | None:
    """(commit, has uncommitted changes) of the checkout this code runs from; None when it
    does not run from one (a wheel installed in a virtualenv, even one inside a checkout)."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(here), *args], capture_output=True,
                                  text=True, timeout=5, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    if git("ls-files", "--error-unmatch", "__init__.py") is None:
        return None  # the package is not tracked here: not a checkout's code
    revision = git("rev-parse", "HEAD")
    if not revision:
        return None
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", str(here.parent))
    return revision, bool(dirty)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_folder(report_dir: Path, name: str) -> Path:
    """``report_dir/<name>-<time>/``, made; never one that exists (two in the same second)."""
    folder = report_dir / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    suffix = 1
    while folder.exists():
        suffix += 1
        folder = folder.with_name(f"{folder.name.split('~')[0]}~{suffix}")
    folder.mkdir(parents=True)
    return folder


@dataclass
class Journal:
    folder: Path
    experiment: str
    preset: str
    target: str
    description: str = ""
    source: Path | None = None  # the experiment file
    file_sha256: str | None = None
    runs: list[RunResult] = field(default_factory=list)
    status: str = RUNNING
    reason: str | None = None  # why it ended other than completed; the error when failed
    started: str = field(default_factory=_now)
    ended: str | None = None
    duration_seconds: float | None = None
    _clock: float = field(default_factory=time.monotonic)

    @classmethod
    def open(cls, report_dir: Path, spec: Experiment, target: str) -> Journal:
        """A new journal for ``spec``, saved at once (status running)."""
        journal = cls(new_folder(report_dir, spec.name), spec.name, spec.preset, target,
                      spec.description, spec.source,
                      sha256(spec.source) if spec.source is not None else None)
        journal.save()
        return journal

    @property
    def path(self) -> Path:
        return self.folder / "result.json"

    def add(self, run: RunResult) -> None:
        """A run that starts (saved again at its end by the runner)."""
        self.runs.append(run)
        self.save()

    def end(self, status: str | None = None, reason: str | None = None) -> None:
        """The journal's end: ``status`` (failed, interrupted) if given, else the runs'."""
        if status is None:
            status = next((s for s in _PRECEDENCE if any(r.status == s for r in self.runs)),
                          COMPLETED)
            reason = next((r.reason for r in self.runs if r.status == status), None)
        self.status, self.reason = status, reason
        self.ended = _now()
        self.duration_seconds = round(time.monotonic() - self._clock, 1)
        self.save()

    @property
    def passed(self) -> bool:
        return self.status in (COMPLETED, ABORTED) and verdict(self.runs)

    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "experiment": self.experiment,
            "preset": self.preset,
            "target": self.target,
            "status": self.status,
        }
        if self.reason is not None:
            out["error" if self.status == FAILED else "reason"] = self.reason
        out["verdict"] = "pass" if self.passed else "fail"
        out["started"] = self.started
        if self.ended is not None:
            out["ended"] = self.ended
            out["duration_seconds"] = self.duration_seconds
        out["tool_version"] = tool_version()
        revision = git_revision()
        if revision is not None:
            out["git_revision"], out["git_dirty"] = revision
        # the settings each run used, by name (fragile, resilient): their switches
        out["settings"] = {run.settings: run.switches for run in self.runs}
        if self.source is not None:
            out["experiment_file"] = {"path": str(self.source), "sha256": self.file_sha256}
        out["runs"] = [{**r.summary(), "timeline": r.timeline, "latency": r.latency,
                        "breakers": r.breakers} for r in self.runs]
        return out

    def save(self) -> None:
        """result.json, written whole then moved into place: a reader never sees half of it.
        Once the journal has ended, the rest of the report too."""
        partial = self.path.with_suffix(".json.partial")
        partial.write_text(json.dumps(self.data(), indent=2))
        partial.replace(self.path)
        if self.ended is not None and self.runs:
            from chaos_lab import report

            report.write_rest(self)


@dataclass
class Gameday:
    """A gameday's own journal: the experiments' journals, in order, and one page."""

    folder: Path
    planned: int  # experiments in the catalog
    journals: list[Journal] = field(default_factory=list)
    status: str = RUNNING
    started: str = field(default_factory=_now)
    ended: str | None = None

    @classmethod
    def open(cls, report_dir: Path, planned: int) -> Gameday:
        gameday = cls(new_folder(report_dir, "gameday"), planned)
        gameday.save()
        return gameday

    def add(self, journal: Journal) -> None:
        self.journals.append(journal)
        self.save()

    def end(self, status: str | None = None) -> None:
        statuses = [j.status for j in self.journals]
        self.status = status or next((s for s in _PRECEDENCE if s in statuses), COMPLETED)
        self.ended = _now()
        self.save()

    @property
    def passed(self) -> bool:
        return (self.status in (COMPLETED, ABORTED) and len(self.journals) == self.planned
                and all(j.passed for j in self.journals))

    def save(self) -> None:
        from chaos_lab.html_report import gameday_page

        summary = {"status": self.status, "verdict": "pass" if self.passed else "fail",
                   "started": self.started, "ended": self.ended, "planned": self.planned,
                   "tool_version": tool_version(),
                   "experiments": [{"experiment": j.experiment, "status": j.status,
                                    "verdict": "pass" if j.passed else "fail",
                                    "journal": str(j.path)} for j in self.journals]}
        (self.folder / "gameday.json").write_text(json.dumps(summary, indent=2))
        pages = [(j, _png(j.folder / "timeline.png")) for j in self.journals]
        (self.folder / "report.html").write_text(
            gameday_page(pages, self.status, self.started, self.ended, self.planned))


def _png(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


def _minutes(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds // 3600:.0f} h {seconds % 3600 / 60:02.0f} min"


def time_left(traffic_left: float, runs_left: int, runs_done: int, traffic_done: float,
              elapsed: float, drain_limit: float) -> str:
    """What is known of the time a gameday has left: the traffic of the runs to come (their
    files say it), plus each run's restart, checks and drain, as long as they took so far in
    this gameday (nothing measured before: the first experiment says)."""
    runs = f"{runs_left} run{'s' if runs_left != 1 else ''}"
    if runs_done == 0:
        return (f"{_minutes(traffic_left)} of traffic left, plus each of {runs}' restart, "
                f"checks and drain (a drain waits up to {_minutes(drain_limit)}; measured once "
                f"the first experiment ends)")
    overhead = max(0.0, elapsed - traffic_done) / runs_done
    return (f"about {_minutes(traffic_left + overhead * runs_left)} left: "
            f"{_minutes(traffic_left)} of traffic, and {runs} x {_minutes(overhead)} of "
            f"restart, checks and drain (their average so far)")
