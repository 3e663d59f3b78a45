"""``chaos-shop``: the lab's command line.

    chaos-shop lab up | status | reset | down
    chaos-shop experiment list
    chaos-shop experiment run NAME|FILE.yaml [--settings fragile] [--compare] [--preset short]
    chaos-shop gameday [--compare] [--preset short]

Exit codes: 0 the hypothesis holds; 1 it is violated (or the steady state before was not met,
or the lab failed); 2 a bad argument or a malformed experiment file.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from chaos_lab import experiment as experiments
from chaos_lab import report
from chaos_lab.bench import BenchPart
from chaos_lab.experiment import COMPLETED, FAILED, HALTED, INTERRUPTED
from chaos_lab.halt import RunState, halt, restore_aws, restore_compose, restore_local
from chaos_lab.journal import Gameday, Journal
from chaos_lab.lint import problems, schema
from chaos_lab.local.lab import DEFAULT_DIR, Lab
from chaos_lab.model import (
    EXPERIMENTS_DIR,
    RESILIENT_SWITCHES,
    Experiment,
    catalog,
    load,
)
from chaos_lab.processes import LabError
from chaos_lab.targets.base import Target
from chaos_lab.targets.local import LocalTarget

app = typer.Typer(help="Chaos Shop's lab: the shop as local processes, faults, experiments.",
                  no_args_is_help=True)
lab_app = typer.Typer(help="Start, inspect, reset and stop the local lab.", no_args_is_help=True)
experiment_app = typer.Typer(help="List and run the experiments (files under experiments/).",
                             no_args_is_help=True)
app.add_typer(lab_app, name="lab")
app.add_typer(experiment_app, name="experiment")
console = Console(width=None if sys.stdout.isatty() else 120)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 120)

LabDir = Annotated[Path, typer.Option("--dir", help="the lab's directory (state and logs)")]


def _say(message: str) -> None:
    console.print(message, highlight=False)


@lab_app.command("up")
def lab_up(directory: LabDir = DEFAULT_DIR) -> None:
    """Start PostgreSQL primary + replica, PgBouncer, moto, the services and nginx."""
    _guard(lambda: Lab(directory).up(log=_say))


@lab_app.command("down")
def lab_down(directory: LabDir = DEFAULT_DIR) -> None:
    """Stop every process of the lab."""
    _guard(lambda: Lab(directory).down(log=_say))


@lab_app.command("status")
def lab_status(directory: LabDir = DEFAULT_DIR) -> None:
    """Each part of the lab: up or down."""
    def show() -> None:
        for name, value in Lab(directory).status().items():
            console.print(f"{name:>12}: {value}", highlight=False)
    _guard(show)


@lab_app.command("reset")
def lab_reset(directory: LabDir = DEFAULT_DIR) -> None:
    """Seeded stock, no orders, empty queues and tables."""
    _guard(lambda: asyncio.run(Lab(directory).reset()))
    _say("lab reset: seeded stock, no orders, queues and tables empty")


class SettingsChoice(StrEnum):
    resilient = "resilient"
    fragile = "fragile"


Preset = Annotated[str, typer.Option(help="default (the file's timings) or one of its "
                                          "presets, e.g. short")]
Scale = Annotated[float, typer.Option(help="multiply the traffic rates")]
TargetName = Annotated[str, typer.Option("--target", help="where the shop runs: local (the "
                                                          "lab), compose or aws")]
ReportDir = Annotated[Path, typer.Option(help="where journals go (result.json, junit.xml, "
                                              "timeline.png)")]
ExperimentsDir = Annotated[Path, typer.Option("--experiments", help="the catalog's folder")]


@experiment_app.command("list")
def experiment_list(folder: ExperimentsDir = EXPERIMENTS_DIR) -> None:
    """The experiments of the catalog: name, fault, description; exit 2 if any is invalid."""
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


@experiment_app.command("validate")
def experiment_validate(
    files: Annotated[list[Path] | None, typer.Argument(
        help="experiment files (.yaml); none: every file of the experiments folder")] = None,
    folder: ExperimentsDir = EXPERIMENTS_DIR,
) -> None:
    """Lint experiment files: every problem of every file at once, each as file:line: field:
    what is wrong; exit 2 on any (0 when all are valid)."""
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
    """The experiment file's format as a JSON Schema, made from the model (for editors and
    linters; docs/experiment.schema.json is this)."""
    print(json.dumps(schema(), indent=2))


@experiment_app.command("run")
def experiment_run(
    name: Annotated[str, typer.Argument(help="a catalog name (see `experiment list`) or a "
                                             "path to an experiment file (.yaml)")],
    settings: Annotated[SettingsChoice, typer.Option(
        help="resilient (the AFTER run) or fragile (the BEFORE run: the file's fragile "
             "settings)")] = SettingsChoice.resilient,
    compare: Annotated[bool, typer.Option(help="run the fragile settings, then the "
                                               "resilient ones; only AFTER decides the "
                                               "verdict")] = False,
    preset: Preset = "default",
    scale: Scale = 1.0,
    target: TargetName = "local",
    report_dir: ReportDir = Path("reports"),
    directory: LabDir = DEFAULT_DIR,
) -> None:
    """Run an experiment and judge its hypothesis: exit 0 when it holds, 1 when violated."""
    spec = _experiment(name, preset, scale, target)
    state = RunState(directory, target)
    with _guarded(), state.session(f"experiment run {spec.name}"):
        journal = _session(target, spec, "compare" if compare else settings.value, report_dir,
                           directory, state)
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
    target: TargetName = "local",
    report_dir: ReportDir = Path("reports"),
    folder: ExperimentsDir = EXPERIMENTS_DIR,
    directory: LabDir = DEFAULT_DIR,
) -> None:
    """Every experiment of the catalog, one verdict table; exit 1 if any AFTER fails."""
    paths = catalog(folder)
    if not paths:
        errors.print(f"no experiment files (*.yaml) in {folder}")
        raise typer.Exit(2)
    # Every file is checked before anything runs: a typo fails in a second, not in an hour.
    specs = _every_experiment(list(paths.values()), preset, scale, target)
    state = RunState(directory, target)
    with _guarded(), state.session(f"gameday of {len(specs)} experiments"):
        book = Gameday.open(report_dir, len(specs))
        for spec in specs:
            journal = _session(target, spec, "compare" if compare else "resilient",
                               report_dir, directory, state)
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


def _experiment(name: str, preset: str, scale: float, target: str) -> Experiment:
    """The file, validated, preset applied; a mistake is exit 2 with file, field and why."""
    if target not in TARGETS:
        raise typer.BadParameter(f"unknown target {target!r}; choose from {', '.join(TARGETS)}",
                                 param_hint="--target")
    try:
        return experiments.experiment(name, preset, scale)
    except LabError as exc:  # ExperimentFileError, an unknown preset, a bad scale
        errors.print(f"[red]experiment error:[/red] {escape(str(exc))}", highlight=False,
                     soft_wrap=True)
        raise typer.Exit(2) from exc


def _every_experiment(paths: list[Path], preset: str, scale: float,
                      target: str) -> list[Experiment]:
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
    if target not in TARGETS:
        raise typer.BadParameter(f"unknown target {target!r}; choose from {', '.join(TARGETS)}",
                                 param_hint="--target")
    return specs


def _session(target: str, spec: Experiment, settings: str, report_dir: Path,
             directory: Path, state: RunState) -> Journal:
    """One experiment's runs (settings: resilient, fragile or compare) with its journal,
    opened before anything runs and ended whatever happens (Ctrl-C: interrupted, once the
    fault is restored; a lab error: failed, said); the table and the report's paths
    printed."""
    journal = Journal.open(report_dir, spec, target)
    _say(f"journal: {journal.path}")
    state.experiment(spec.name)
    try:
        shop = _target(target, directory)
        asyncio.run(_runs(shop, spec, settings, journal, state))
        journal.end()
    except KeyboardInterrupt:
        journal.end(INTERRUPTED, "interrupted (Ctrl-C)")
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


@app.command("halt")
def halt_command(
    target: TargetName = "local",
    directory: LabDir = DEFAULT_DIR,
    wait: Annotated[float, typer.Option(min=0, help="seconds to wait for the run to restore "
                                                    "the fault")] = 120,
    force: Annotated[bool, typer.Option(help="restore the fault from here at once, even "
                                             "while the run lives")] = False,
) -> None:
    """Restore whatever fault a run has on a target; the run ends halted.

    From another terminal, or after the runner died: the run's state (in the lab directory)
    says what is on. A live run is asked to halt and restores the fault itself within a
    second (after an inject in progress returns); a fault left by a run that is gone is
    restored from here. Nothing to halt is not an error: exit 0."""
    state = RunState(directory, target)
    restorers = {
        "local": partial(restore_local, directory),
        "compose": partial(restore_compose, Path.cwd(), "docker-compose.yml"),
        "aws": partial(restore_aws, lambda: _target("aws", directory)),
    }
    if target not in restorers:
        raise typer.BadParameter(f"unknown target {target!r}; choose from {', '.join(TARGETS)}",
                                 param_hint="--target")
    with _guarded():
        done = asyncio.run(halt(state, restorers[target], _say, wait, force))
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


@app.command("bench")
def bench(
    runs: Annotated[int, typer.Option(min=1, help="runs per figure (the median is kept)")] = 3,
    seconds: Annotated[float, typer.Option(min=1, help="length of each load run")] = 10,
    connections: Annotated[int, typer.Option(min=1, help="wrk's open connections")] = 50,
    markdown: Annotated[Path | None, typer.Option(help="also write the figures here")] = None,
    part: Annotated[list[BenchPart] | None, typer.Option(
        help="run only this part (repeat the option for several); all by default")] = None,
    directory: LabDir = DEFAULT_DIR,
) -> None:
    """Throughput and latency against a sync baseline and the ceiling, degraded paths, the
    worker's drain rate and memory, on the local lab."""
    from chaos_lab.bench import runner

    parts = tuple(p.value for p in part) if part else runner.PARTS

    def go() -> None:
        lab = Lab(directory)
        lab.up(log=_say)
        text = runner.run(lab, runs, seconds, connections, say=_say, parts=parts).markdown()
        console.print(text, markup=False, highlight=False)
        if markdown is not None:
            markdown.write_text(text)

    _guard(go)


TARGETS = ("local", "compose", "aws")


def _target(name: str, directory: Path) -> Target:
    """local: the lab (brought up if it is not); compose: `docker compose up` from this
    folder; aws: what `terraform apply` in infra/ deployed (read from its outputs)."""
    if name == "compose":
        from chaos_lab.targets.compose import ComposeTarget

        return ComposeTarget(Path.cwd())
    if name == "aws":
        from chaos_lab.targets.aws import AwsTarget

        return AwsTarget.from_infra(Path("infra"))
    lab = Lab(directory)
    lab.up(log=_say)
    return LocalTarget(lab)


def _guard(action: object) -> None:
    """A lab failure is a clear message and exit 1, not a traceback."""
    try:
        action()  # type: ignore[operator]
    except LabError as exc:
        console.print(f"[red]lab error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from exc


if __name__ == "__main__":
    app()
