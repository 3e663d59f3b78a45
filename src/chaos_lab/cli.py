"""``chaos-shop``: the lab's command line.

    chaos-shop --version
    chaos-shop lab up | status | reset | down
    chaos-shop experiment list [--faults] | describe FAULT | validate [FILE...] | schema
    chaos-shop experiment run NAME|FILE.yaml [--settings fragile] [--compare] [--preset short]
    chaos-shop gameday [--compare] [--preset short]
    chaos-shop halt
    chaos-shop bench [--part faults]

The words: the shop runs with its **settings**, ``fragile`` or ``resilient``, each a value of
its two **switches** (``proxy``, ``degradation``): resilient has both on, fragile is what the
experiment file's ``fragile:`` block says. A comparison runs **BEFORE** (the fragile settings)
then **AFTER** (the resilient settings); only AFTER decides the verdict.

Every command works from any folder. The folders, one option each wherever they matter:
``--lab-dir`` (the local lab, and the state of every target's run: ``.lab``),
``--report-dir`` (journals and reports: ``reports``), ``--experiments-dir`` (the catalog:
the one installed with the tool), ``--infra-dir`` (the Terraform ``--target aws`` reads:
``./infra``, else the checkout's) and ``--compose-file`` (``--target compose``:
``./docker-compose.yml``, else the checkout's).

Exit codes: 0 the hypothesis holds (for the other commands: all is well); 1 it is violated, a
run was aborted, halted or failed, or the lab failed; 2 a bad argument or an invalid
experiment file; 130 interrupted (Ctrl-C), once the fault is restored and the journal written.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from chaos_lab import experiment as experiments
from chaos_lab import report
from chaos_lab.bench import BenchPart
from chaos_lab.experiment import COMPLETED, FAILED, HALTED, INTERRUPTED
from chaos_lab.halt import RunState, halt, restore_aws, restore_compose, restore_local
from chaos_lab.journal import Gameday, Journal, time_left, tool_version
from chaos_lab.lint import problems, schema
from chaos_lab.local.lab import DEFAULT_DIR, Lab
from chaos_lab.model import (
    EXPERIMENTS_DIR,
    RESILIENT_SWITCHES,
    Experiment,
    Fault,
    catalog,
    describe,
    find,
    load,
)
from chaos_lab.processes import LabError
from chaos_lab.targets.base import Target

app = typer.Typer(help="Chaos Shop's lab: the shop under faults, experiments as files, a "
                       "verdict per hypothesis.", no_args_is_help=True)
lab_app = typer.Typer(help="Start, inspect, reset and stop the local lab.", no_args_is_help=True)
experiment_app = typer.Typer(help="The experiments: list, describe the faults, validate, run.",
                             no_args_is_help=True)
app.add_typer(lab_app, name="lab")
app.add_typer(experiment_app, name="experiment")
console = Console(width=None if sys.stdout.isatty() else 120)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 120)

# A checkout's top folder (None for an installed wheel): its infra/ and docker-compose.yml
# are the defaults when the current folder has none.
_TOP = Path(__file__).resolve().parents[2]
CHECKOUT = _TOP if (_TOP / "pyproject.toml").exists() else None


def _say(message: str) -> None:
    console.print(message, highlight=False)


def _version(value: bool) -> None:
    if value:
        console.print(f"chaos-shop {tool_version()}", highlight=False)
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Show the version and exit.")] = False) -> None:
    """Chaos Shop's lab: the shop under faults, experiments as files, a verdict per
    hypothesis."""


# The options every command spells the same way -----------------------------------------


class TargetChoice(StrEnum):
    local = "local"
    compose = "compose"
    aws = "aws"


class SettingsChoice(StrEnum):
    resilient = "resilient"
    fragile = "fragile"


LabDir = Annotated[Path, typer.Option(
    "--lab-dir", help="the local lab's folder (its state and logs), where every target's run "
                      "keeps its state too (for halt)")]
ReportDir = Annotated[Path, typer.Option(
    "--report-dir", help="where each experiment's folder goes (result.json, report.html, "
                         "junit.xml, timeline.png), and a gameday's")]
ExperimentsDir = Annotated[Path, typer.Option(
    "--experiments-dir", help="the catalog's folder",
    show_default="the catalog installed with the tool")]
InfraDir = Annotated[Path | None, typer.Option(
    "--infra-dir", help="--target aws: the folder `terraform apply` ran in",
    show_default="./infra, else the checkout's")]
ComposeFile = Annotated[Path | None, typer.Option(
    "--compose-file", help="--target compose: the stack's compose file",
    show_default="./docker-compose.yml, else the checkout's")]
TargetOption = Annotated[TargetChoice, typer.Option(
    "--target", help="where the shop runs: local (the lab), compose (docker compose) or aws "
                     "(the Terraform deployment)")]
Preset = Annotated[str, typer.Option(help="default (the file's timings) or one of its "
                                          "presets, e.g. short")]
Scale = Annotated[float, typer.Option(help="multiply the traffic rates")]

REPORTS = Path("reports")


class Where:
    """Where a target is: the folders and files the options name, resolved at use."""

    def __init__(self, target: TargetChoice, lab_dir: Path, infra_dir: Path | None = None,
                 compose_file: Path | None = None) -> None:
        self.target, self.lab_dir = target, lab_dir
        self._infra_dir, self._compose_file = infra_dir, compose_file

    @property
    def infra_dir(self) -> Path:
        return _found(self._infra_dir, "infra", "--infra-dir",
                      "the folder `terraform apply` ran in")

    @property
    def compose_file(self) -> Path:
        return _found(self._compose_file, "docker-compose.yml", "--compose-file",
                      "the compose file the stack was started with")

    @property
    def state(self) -> RunState:
        return RunState(self.lab_dir, self.target.value)

    def target_of(self) -> Target:
        """local: the lab (brought up if it is not); compose: the stack ``docker compose
        up`` runs from the compose file; aws: what ``terraform apply`` deployed (its
        outputs)."""
        if self.target is TargetChoice.compose:
            from chaos_lab.targets.compose import ComposeTarget

            file = self.compose_file
            return ComposeTarget(file.parent, compose_file=file.name)
        if self.target is TargetChoice.aws:
            from chaos_lab.targets.aws import AwsTarget

            return AwsTarget.from_infra(self.infra_dir)
        from chaos_lab.targets.local import LocalTarget

        lab = Lab(self.lab_dir)
        lab.up(log=_say)
        return LocalTarget(lab)

    def restorer(self) -> Callable[..., Any]:
        """How ``halt`` restores a fault a runner left on this target."""
        if self.target is TargetChoice.compose:
            file = self.compose_file
            return partial(restore_compose, file.parent, file.name)
        if self.target is TargetChoice.aws:
            return partial(restore_aws, self.target_of)
        return partial(restore_local, self.lab_dir)


def _found(given: Path | None, name: str, option: str, what: str) -> Path:
    for candidate in (given, Path.cwd() / name, CHECKOUT / name if CHECKOUT else None):
        if candidate is not None and (candidate.exists() or candidate is given):
            if not candidate.exists():
                raise LabError(f"{option} {candidate}: no such file or folder")
            return candidate.resolve()
    raise LabError(f"no {name} here ({Path.cwd()}): pass {option}, {what}")


# The local lab ---------------------------------------------------------------------------


@lab_app.command("up")
def lab_up(lab_dir: LabDir = DEFAULT_DIR) -> None:
    """Start PostgreSQL primary + replica, PgBouncer, moto, the services and nginx."""
    with _guarded():
        Lab(lab_dir).up(log=_say)


@lab_app.command("down")
def lab_down(lab_dir: LabDir = DEFAULT_DIR) -> None:
    """Stop every process of the lab."""
    with _guarded():
        Lab(lab_dir).down(log=_say)


@lab_app.command("status")
def lab_status(lab_dir: LabDir = DEFAULT_DIR) -> None:
    """Each part of the lab, up or down, and the run on it with its fault, if any."""
    lab = Lab(lab_dir)
    if lab.state is None:
        _say(f"the lab is not up (no {lab.state_file}): `chaos-shop lab up` starts it")
    else:
        with _guarded():
            for name, value in lab.status().items():
                console.print(f"{name:>12}: {value}", highlight=False)
    run = RunState(lab_dir, "local").read()
    if run is not None:
        fault = run.get("fault")
        _say(f"{'run':>12}: {run.get('what')} (pid {run.get('pid')}, since "
             f"{run.get('started')})" + (f"; fault {fault['name']} on since {fault['since']}"
                                         if fault else ""))


@lab_app.command("reset")
def lab_reset(lab_dir: LabDir = DEFAULT_DIR) -> None:
    """Seeded stock, no orders, empty queues and tables."""
    with _guarded():
        asyncio.run(Lab(lab_dir).reset())
    _say("lab reset: seeded stock, no orders, queues and tables empty")


# Experiments -----------------------------------------------------------------------------


@experiment_app.command("list")
def experiment_list(
    folder: ExperimentsDir = EXPERIMENTS_DIR,
    faults: Annotated[bool, typer.Option("--faults", help="the faults instead: each one's "
                                                          "options and what its hold is")]
    = False,
) -> None:
    """The experiments of the catalog: name, fault, description; exit 2 if any is invalid."""
    if faults:
        _list_faults()
        return
    table = Table(title=f"experiments in {folder}")
    for column in ("name", "fault", "hold", "description"):
        table.add_column(column)
    invalid = 0
    for name, path in catalog(folder).items():
        found = problems(path)
        if found:
            invalid += 1
            table.add_row(name, "[red]invalid[/red]", "",
                          f"{len(found)} problem{'s' if len(found) > 1 else ''}: "
                          + escape(found[0].where or found[0].message)
                          + (", ..." if len(found) > 1 else ""))
            continue
        spec = load(path)
        table.add_row(spec.name, spec.fault.name.value, f"{spec.fault.hold:g} s",
                      spec.description)
    console.print(table)
    if invalid:
        errors.print(f"{invalid} invalid: `chaos-shop experiment validate` says what is wrong")
        raise typer.Exit(2)


def _implemented_by(fault: Fault) -> dict[str, str]:
    """Each target that implements ``fault``, and how where it says."""
    from chaos_lab.targets import aws, compose, local

    out = {}
    if fault in local.FAULTS:
        out["local"] = "the lab's processes (chaos_lab.targets.local)"
    if fault in compose.FAULTS:
        out["compose"] = "docker compose commands (chaos_lab.targets.compose)"
    if fault in aws.FAULTS:
        out["aws"] = aws.FAULTS[fault]
    return out


def _list_faults() -> None:
    table = Table(title="the faults (chaos-shop experiment describe FAULT says more)")
    for column in ("fault", "what", "options (default)", "hold", "targets"):
        table.add_column(column)
    for fault in Fault:
        doc = describe(fault)
        table.add_row(fault.value, doc.what.split(": ")[0].split(". ")[0],
                      "\n".join(f"{o.name} ({o.default})" for o in doc.options) or "-",
                      doc.hold, ", ".join(_implemented_by(fault)))
    console.print(table)


@experiment_app.command("describe")
def experiment_describe(
    fault: Annotated[Fault, typer.Argument(help="a fault of the catalog")],
    folder: ExperimentsDir = EXPERIMENTS_DIR,
) -> None:
    """A fault: what it does, its options, what hold is for it, who implements it."""
    doc = describe(fault)
    _say(f"[bold]{fault.value}[/bold]: {escape(doc.what)}")
    _say(f"\n[bold]hold[/bold] (fault.hold): {escape(doc.hold)}")
    if doc.options:
        _say("\n[bold]options[/bold] (fault.options):")
        for option in doc.options:
            _say(f"  {option.name}: {escape(option.accepts)}, default {option.default}: "
                 f"{escape(option.description)}")
    else:
        _say("\n[bold]options[/bold]: none")
    _say("\n[bold]targets[/bold]:")
    for target, how in _implemented_by(fault).items():
        _say(f"  {target}: {escape(how)}")
    files = [name for name, path in catalog(folder).items()
             if not problems(path) and load(path).fault.name is fault]
    _say(f"\n[bold]experiments[/bold]: {', '.join(files) or 'none in ' + str(folder)}")


@experiment_app.command("validate")
def experiment_validate(
    files: Annotated[list[Path] | None, typer.Argument(
        help="experiment files (.yaml); none: every file of the experiments folder")] = None,
    folder: ExperimentsDir = EXPERIMENTS_DIR,
) -> None:
    """Lint experiment files: every problem of every file at once.

    Each problem as file:line: field: what is wrong; exit 2 on any, 0 when all are valid."""
    paths = list(files) if files else list(catalog(folder).values())
    if not paths:
        errors.print(f"no experiment files (*.yaml) in {folder}")
        raise typer.Exit(2)
    total, bad = 0, 0
    for path in paths:
        found = problems(path)
        for problem in found:
            console.print(str(problem), markup=False, highlight=False, soft_wrap=True)
        total += len(found)
        bad += bool(found)
    if total:
        errors.print(f"{bad} of {len(paths)} file{'s' if len(paths) > 1 else ''} invalid, "
                     f"{total} problem{'s' if total > 1 else ''}", highlight=False)
        raise typer.Exit(2)
    _say(f"{len(paths)} file{'s' if len(paths) > 1 else ''} valid")


@experiment_app.command("schema")
def experiment_schema() -> None:
    """The experiment file's format as a JSON Schema, made from the model.

    For editors and linters; docs/experiment.schema.json is this."""
    print(json.dumps(schema(), indent=2))


@experiment_app.command("run")
def experiment_run(
    name: Annotated[str, typer.Argument(help="a catalog name (see `experiment list`) or a "
                                             "path to an experiment file (.yaml)")],
    settings: Annotated[SettingsChoice, typer.Option(
        help="resilient (the AFTER run) or fragile (the BEFORE run: the file's fragile: "
             "switches)")] = SettingsChoice.resilient,
    compare: Annotated[bool, typer.Option(help="BEFORE (the fragile settings), then AFTER "
                                               "(the resilient settings); only AFTER decides "
                                               "the verdict")] = False,
    preset: Preset = "default",
    scale: Scale = 1.0,
    target: TargetOption = TargetChoice.local,
    report_dir: ReportDir = REPORTS,
    lab_dir: LabDir = DEFAULT_DIR,
    experiments_dir: ExperimentsDir = EXPERIMENTS_DIR,
    infra_dir: InfraDir = None,
    compose_file: ComposeFile = None,
) -> None:
    """Run an experiment and judge its hypothesis: exit 0 when it holds, 1 when not."""
    spec = _experiment(name, preset, scale, experiments_dir)
    where = Where(target, lab_dir, infra_dir, compose_file)
    with _guarded(), where.state.session(f"experiment run {spec.name}"):
        journal = _session(where, spec, "compare" if compare else settings.value, report_dir)
    _say(f"verdict: {'PASS' if journal.passed else 'FAIL'} ({spec.name}, {spec.preset} "
         f"preset{'' if journal.status == COMPLETED else ', ' + journal.status})")
    if journal.status == INTERRUPTED:
        raise typer.Exit(130)
    if not journal.passed:
        raise typer.Exit(1)


@app.command("gameday")
def gameday(
    compare: Annotated[bool, typer.Option(help="BEFORE and AFTER for each experiment")]
    = False,
    preset: Preset = "default",
    scale: Scale = 1.0,
    target: TargetOption = TargetChoice.local,
    report_dir: ReportDir = REPORTS,
    lab_dir: LabDir = DEFAULT_DIR,
    experiments_dir: ExperimentsDir = EXPERIMENTS_DIR,
    infra_dir: InfraDir = None,
    compose_file: ComposeFile = None,
) -> None:
    """Every experiment of the catalog, one verdict table and one report.html.

    Every file is validated before anything runs. Exit 1 if any AFTER fails."""
    paths = catalog(experiments_dir)
    if not paths:
        errors.print(f"no experiment files (*.yaml) in {experiments_dir}")
        raise typer.Exit(2)
    # Every file is checked before anything runs: a typo fails in a second, not in an hour.
    specs = _every_experiment(list(paths.values()), preset, scale)
    where = Where(target, lab_dir, infra_dir, compose_file)
    runs = 2 if compare else 1
    started = time.monotonic()
    with _guarded(), where.state.session(f"gameday of {len(specs)} experiments"):
        book = Gameday.open(report_dir, len(specs))
        for i, spec in enumerate(specs):
            done = specs[:i]
            left = time_left(sum(s.duration for s in specs[i:]) * runs, (len(specs) - i) * runs,
                             len(done) * runs, sum(s.duration for s in done) * runs,
                             time.monotonic() - started,
                             max(s.drain_timeout for s in specs[i:]))
            _say(f"[bold]gameday: experiment {i + 1} of {len(specs)}: {spec.name}[/bold] "
                 f"({runs} run{'s' if runs > 1 else ''} of {spec.duration:g} s of traffic); "
                 f"{left}")
            journal = _session(where, spec, "compare" if compare else "resilient", report_dir)
            book.add(journal)
            if journal.status in (FAILED, HALTED, INTERRUPTED):
                _say(f"gameday stopped: {spec.name} ended {journal.status}")
                break
        book.end()
    console.print(report.gameday_table([(j.experiment, j.runs[0].fault if j.runs else "-",
                                         j.runs) for j in book.journals]))
    _say(f"gameday report: {book.folder / 'report.html'} ({book.status}, "
         f"{'PASS' if book.passed else 'FAIL'})")
    if book.status == INTERRUPTED:
        raise typer.Exit(130)
    if not book.passed:
        raise typer.Exit(1)


def _experiment(name: str, preset: str, scale: float, folder: Path) -> Experiment:
    """The file, validated, preset applied; a mistake is exit 2 with file, field and why."""
    try:
        path = find(name, folder)
        return load(path).resolve(preset, scale, source=path)
    except LabError as exc:  # ExperimentFileError, an unknown preset, a bad scale
        errors.print(f"[red]experiment error:[/red] {escape(str(exc))}", highlight=False,
                     soft_wrap=True)
        raise typer.Exit(2) from exc


def _every_experiment(paths: list[Path], preset: str, scale: float) -> list[Experiment]:
    """Each file, validated, preset applied; every problem of every file said before exit 2
    (nothing runs)."""
    said: list[str] = []
    specs = []
    for path in paths:
        found = problems(path)
        if found:
            said += [str(p) for p in found]
            continue
        try:
            specs.append(load(path).resolve(preset, scale, source=path))
        except LabError as exc:  # the preset it lacks, a bad scale
            said.append(f"{path}: {exc}")
    if said:
        for line in said:
            errors.print(line, markup=False, highlight=False, soft_wrap=True)
        errors.print(f"gameday: {len(said)} problem{'s' if len(said) > 1 else ''}; nothing "
                     f"was run", highlight=False)
        raise typer.Exit(2)
    return specs


def _session(where: Where, spec: Experiment, settings: str, report_dir: Path) -> Journal:
    """One experiment's runs (settings: resilient, fragile or compare) with its journal,
    opened before anything runs and ended whatever happens (Ctrl-C: interrupted, once the
    fault is restored; a lab error: failed, said); the table and the report's paths
    printed."""
    journal = Journal.open(report_dir, spec, where.target.value)
    _say(f"journal: {journal.path}")
    state = where.state
    state.experiment(spec.name)
    try:
        shop = where.target_of()
        asyncio.run(_runs(shop, spec, settings, journal, state))
        journal.end()
    except KeyboardInterrupt:
        journal.end(INTERRUPTED, "by Ctrl-C")
    except LabError as exc:
        journal.end(FAILED, str(exc))
        console.print(f"[red]lab error:[/red] {escape(str(exc))}")
    except BaseException as exc:
        journal.end(FAILED, f"{type(exc).__name__}: {exc}")
        _report(journal)
        raise
    _report(journal)
    return journal


async def _runs(shop: Target, spec: Experiment, settings: str, journal: Journal,
               state: RunState) -> None:
    if settings == "compare":
        await experiments.compare(shop, spec, say=_say, journal=journal, stops=state)
    elif settings == SettingsChoice.fragile:
        await experiments.run(shop, spec, spec.fragile, "BEFORE", _say, journal=journal,
                              stops=state)
    else:
        await experiments.run(shop, spec, RESILIENT_SWITCHES, "AFTER", _say, journal=journal,
                              stops=state)


def _report(journal: Journal) -> None:
    if journal.runs:
        console.print(report.table(journal.runs))
    files = [journal.path] + [journal.folder / name for name in ("report.html", "junit.xml",
                                                                 "timeline.png")
                              if (journal.folder / name).exists()]
    _say(f"journal ({journal.status}): " + ", ".join(str(f) for f in files))


# Stopping a run ----------------------------------------------------------------------------


@app.command("halt")
def halt_command(
    target: TargetOption = TargetChoice.local,
    lab_dir: LabDir = DEFAULT_DIR,
    wait: Annotated[float, typer.Option(min=0, help="seconds to wait for the run to restore "
                                                    "the fault")] = 120,
    force: Annotated[bool, typer.Option(help="restore the fault from here at once, even "
                                             "while the run lives")] = False,
    infra_dir: InfraDir = None,
    compose_file: ComposeFile = None,
) -> None:
    """Restore whatever fault a run has on a target; the run ends halted.

    From another terminal, or after the runner died: the run's state (in the lab folder)
    says what is on. A live run is asked to halt and restores the fault itself within a
    second (after an inject in progress returns); a fault left by a run that is gone is
    restored from here. Nothing to halt is not an error: exit 0."""
    where = Where(target, lab_dir, infra_dir, compose_file)
    with _guarded():
        done = asyncio.run(halt(where.state, where.restorer(), _say, wait, force))
    if not done:
        raise typer.Exit(1)


@contextmanager
def _guarded() -> Iterator[None]:
    """A lab failure is a clear message and exit 1, not a traceback."""
    try:
        yield
    except LabError as exc:
        console.print(f"[red]lab error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from exc


# The bench ---------------------------------------------------------------------------------


@app.command("bench")
def bench(
    runs: Annotated[int, typer.Option(min=1, help="runs per figure (the median is kept)")] = 3,
    seconds: Annotated[float, typer.Option(min=1, help="length of each load run")] = 10,
    connections: Annotated[int, typer.Option(min=1, help="wrk's open connections")] = 50,
    markdown: Annotated[Path | None, typer.Option(help="also write the figures here")] = None,
    part: Annotated[list[BenchPart] | None, typer.Option(
        help="run only this part (repeat the option for several); all by default")] = None,
    lab_dir: LabDir = DEFAULT_DIR,
) -> None:
    """The shop's figures on the local lab, against a sync baseline and the ceiling.

    Throughput and latency of the catalog and of orders, the degraded paths, the worker's
    drain rate, each fault's latency, and memory."""
    from chaos_lab.bench import runner

    parts = tuple(p.value for p in part) if part else runner.PARTS
    with _guarded():
        lab = Lab(lab_dir)
        lab.up(log=_say)
        text = runner.run(lab, runs, seconds, connections, say=_say, parts=parts).markdown()
        console.print(text, markup=False, highlight=False)
        if markdown is not None:
            markdown.write_text(text)


if __name__ == "__main__":
    app()
