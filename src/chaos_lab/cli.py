"""``chaos-shop``: the lab's command line.

    chaos-shop lab up | status | reset | down
    chaos-shop experiment run failover|db-outage [--compare] [--preset short] [--scale 10]
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from chaos_lab import experiment as experiments
from chaos_lab import report
from chaos_lab.bench import BenchPart
from chaos_lab.lab import DEFAULT_DIR, Lab
from chaos_lab.local_target import LocalTarget
from chaos_lab.processes import LabError
from chaos_lab.target import RESILIENT, Target

app = typer.Typer(help="Chaos Shop's lab: the shop as local processes, faults, experiments.",
                  no_args_is_help=True)
lab_app = typer.Typer(help="Start, inspect, reset and stop the local lab.", no_args_is_help=True)
experiment_app = typer.Typer(help="Run the failover and outage experiments.",
                             no_args_is_help=True)
app.add_typer(lab_app, name="lab")
app.add_typer(experiment_app, name="experiment")
console = Console(width=None if sys.stdout.isatty() else 120)

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


@experiment_app.command("run")
def experiment_run(
    name: Annotated[str, typer.Argument(help="failover or db-outage")],
    compare: Annotated[bool, typer.Option(help="run the fragile settings, then the "
                                               "resilient ones, side by side")] = False,
    preset: Annotated[str, typer.Option(help="default (the reference's timings) or short")]
    = "default",
    scale: Annotated[float, typer.Option(help="multiply the traffic rates")] = 1.0,
    target: Annotated[str, typer.Option(help="where the shop runs: local (the lab), "
                                             "compose or aws")] = "local",
    report_dir: Annotated[Path, typer.Option(help="where results go")] = Path("reports"),
    directory: LabDir = DEFAULT_DIR,
) -> None:
    """Run an experiment against the lab (brought up if it is not) and report it."""
    if target not in TARGETS:
        raise typer.BadParameter(f"unknown target {target!r}; choose from {', '.join(TARGETS)}",
                                 param_hint="--target")
    try:
        spec = experiments.experiment(name, preset, scale)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc

    def go() -> None:
        shop = _target(target, directory)
        if compare:
            runs = asyncio.run(experiments.compare(shop, spec, say=_say))
        else:
            runs = [asyncio.run(experiments.run(shop, spec, dict(RESILIENT), "AFTER", _say))]
        console.print(report.table(runs))
        folder = report.write(runs, report_dir)
        _say(f"report: {folder / 'result.json'} and {folder / 'timeline.png'}")

    _guard(go)


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
        from chaos_lab.compose_target import ComposeTarget

        return ComposeTarget(Path.cwd())
    if name == "aws":
        from chaos_lab.aws_target import AwsTarget

        return AwsTarget.from_infra(Path("infra"))
    lab = Lab(directory)
    lab.up(log=_say)
    return LocalTarget(lab)


def _guard(action: object) -> None:
    """A lab failure is a clear message and exit 1, not a traceback."""
    try:
        action()  # type: ignore[operator]
    except LabError as exc:
        console.print(f"[red]lab error:[/red] {exc}")
        raise typer.Exit(1) from exc


if __name__ == "__main__":
    app()
