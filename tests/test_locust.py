"""A short headless Locust run against the whole shop as local processes (the lab): the
shopper persona reaches every route through nginx, nothing fails, and the SLO gate on quit
sets the exit code."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos_lab.local.lab import Lab

ROOT = Path(__file__).resolve().parents[1]
LOCUST = Path(sys.executable).with_name("locust")
NAMES = {"/products", "/products/[id]", "/orders"}


@pytest.fixture(scope="module")
def lab(work_dir: Path) -> Iterator[Lab]:
    lab = Lab(work_dir / "locust-lab")
    try:  # down also when up fails half-way: nothing is left running
        lab.up(log=lambda *_: None)
        yield lab
    finally:
        lab.down(log=lambda *_: None)


def locust(lab: Lab, csv_prefix: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run from the repository root, so pyproject.toml's [tool.locust] is read as it would be."""
    return subprocess.run(
        [str(LOCUST), "-f", "loadtest/locustfile.py", "--headless", "--host", lab.entry_url,
         "--csv", str(csv_prefix), "--only-summary", "--stop-timeout", "5", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )


def stats(csv_prefix: Path) -> dict[str, dict[str, str]]:
    path = csv_prefix.with_name(csv_prefix.name + "_stats.csv")
    with path.open() as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


def test_headless_run_meets_the_slo(lab: Lab, tmp_path: Path) -> None:
    result = locust(lab, tmp_path / "run", "-u", "10", "-r", "10", "-t", "10s")
    output = result.stdout + result.stderr

    assert result.returncode == 0, output[-3000:]
    assert "SLO passed" in output
    rows = stats(tmp_path / "run")
    for name in NAMES:
        assert int(rows[name]["Request Count"]) > 0, name
        assert int(rows[name]["Failure Count"]) == 0, (name, output[-3000:])
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    # three catalog reads to one order, by weight
    reads = int(rows["/products"]["Request Count"]) + int(rows["/products/[id]"]["Request Count"])
    assert reads > int(rows["/orders"]["Request Count"])


def test_slo_gate_fails_the_run_beyond_its_threshold(lab: Lab, tmp_path: Path) -> None:
    result = locust(lab, tmp_path / "gate", "-u", "5", "-r", "5", "-t", "3s",
                    "--slo-p95-ms", "0.001")
    output = result.stdout + result.stderr

    assert result.returncode == 1, output[-3000:]
    assert "SLO FAILED: p95" in output
    assert int(stats(tmp_path / "gate")["Aggregated"]["Failure Count"]) == 0
