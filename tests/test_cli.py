"""The command line's small things: --version, --target's choices, a stopped lab's status,
help that reads whole, and a gameday's horizon."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from chaos_lab.cli import app
from chaos_lab.journal import time_left, tool_version
from chaos_lab.model import FAULT_OPTIONS, Fault, describe

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"chaos-shop {tool_version()}"


def test_target_shows_its_choices_and_refuses_others() -> None:
    result = runner.invoke(app, ["experiment", "run", "--help"], terminal_width=200)
    assert "local|compose|aws" in result.output
    result = runner.invoke(app, ["halt", "--target", "moon"])
    assert result.exit_code == 2 and "moon" in result.output


def test_the_folder_options_are_spelled_the_same_everywhere() -> None:
    for command in (["experiment", "run"], ["gameday"], ["halt"], ["lab", "up"], ["bench"]):
        text = runner.invoke(app, [*command, "--help"], terminal_width=200).output
        assert "--lab-dir" in text and "--dir " not in text, command
    for command in (["experiment", "run"], ["gameday"]):
        text = runner.invoke(app, [*command, "--help"], terminal_width=200).output
        for option in ("--report-dir", "--experiments-dir", "--infra-dir", "--compose-file"):
            assert option in text, (command, option)


def test_a_stopped_lab_says_so_and_is_no_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["lab", "status", "--lab-dir", str(tmp_path / "lab")])
    assert result.exit_code == 0
    said = " ".join(result.output.split())  # the terminal's width wraps it where it will
    assert "the lab is not up" in said and "chaos-shop lab up" in said


def test_every_commands_summary_is_whole() -> None:
    """The command list shows each docstring's first paragraph: whole sentences, wrapped by
    the terminal, not cut where the docstring's lines break."""
    lines = runner.invoke(app, ["--help"]).output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("│ bench"))
    summary = [lines[start].split("bench", 1)[1]]
    for line in lines[start + 1:]:
        if not line.startswith("│    "):
            break
        summary.append(line)
    text = " ".join(part.strip(" │") for part in summary)
    assert text == ("The shop's figures on the local lab, against a sync baseline and the "
                    "ceiling.")


def test_a_gamedays_horizon_is_what_is_known() -> None:
    first = time_left(26 * 60, 26, 0, 0, 0, 300)
    assert first.startswith("26 min of traffic left, plus each of 26 runs' restart") \
        and "measured once the first experiment ends" in first
    later = time_left(20 * 60, 20, 6, 6 * 120, 6 * 120 + 6 * 70, 300)
    assert later == ("about 43 min left: 20 min of traffic, and 20 runs x 70 s of restart, "
                     "checks and drain (their average so far)")


def test_every_fault_is_described_in_one_place() -> None:
    """Each fault's options class says what it does and what its hold is, once."""
    for fault in Fault:
        cls = FAULT_OPTIONS[fault]
        assert cls.__dict__.get("__doc__"), f"{cls.__name__} says what {fault} does"
        assert "HOLD" in cls.__dict__, f"{cls.__name__} says what hold is for {fault}"
        assert describe(fault).what and describe(fault).hold


def test_describe_and_list_the_faults() -> None:
    result = runner.invoke(app, ["experiment", "describe", "brownout"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "brownout: The database answers, `delay` seconds late" in text
    assert "hold (fault.hold): seconds the database is slow" in text
    assert "delay: number > 0, <= 60, default 3: seconds every database answer is delayed" \
        in text
    assert "local:" in text and "compose:" in text and "aws: FIS template" in text
    assert "experiments: brownout" in text
    assert runner.invoke(app, ["experiment", "describe", "meteor"]).exit_code == 2
    listed = runner.invoke(app, ["experiment", "list", "--faults"], terminal_width=200)
    assert listed.exit_code == 0
    for fault in Fault:
        assert fault.value in listed.output
