"""chaos-shop installs like a tool: a wheel built from the sources, installed (without its
dependencies, which come from the test's own virtualenv) into a fresh virtualenv, works from
an empty folder: its version, the catalog it ships, a lint of a bad file with every problem."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What the wheel is built from (pyproject.toml's packages.find) and nothing else.
SOURCES = ("pyproject.toml", "src", "services", "loadtest")
BAD = """\
name: Bad Name
fault: {name: meteor}
timing: {fault_at: 40, duration: 30}
hypothesis: {max_p99_latency_ms: 1000, max_recovery_seconds: 5, max_failed: 1}
"""


def _run(*cmd: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The ``bin`` folder of a fresh virtualenv with the wheel installed."""
    work = tmp_path_factory.mktemp("install")
    source = work / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns(
                "__pycache__", "*.egg-info", "build"))
        else:
            shutil.copy(ROOT / name, source / name)
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                 "--no-index", "-q", "-w", work / "dist", source)
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = (work / "dist").glob("chaos_shop-*.whl")
    venv = work / "venv"
    made = _run(sys.executable, "-m", "venv", "--without-pip", venv)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    # The dependencies: this virtualenv's (a path line in a .pth; its own .pth files, the
    # editable install of the checkout among them, are not read from there).
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"
                     ).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps",
                "--no-index", "-q", wheel)
    assert done.returncode == 0, done.stderr[-3000:]
    yield venv / "bin"


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


def test_the_version_from_its_metadata(installed: Path, empty: Path) -> None:
    done = _run(installed / "chaos-shop", "--version", cwd=empty)
    assert done.returncode == 0, done.stderr
    from chaos_lab.journal import tool_version

    assert done.stdout.strip() == f"chaos-shop {tool_version()}"


def test_the_catalog_ships_with_the_wheel(installed: Path, empty: Path) -> None:
    done = _run(installed / "chaos-shop", "experiment", "list", cwd=empty)
    assert done.returncode == 0, done.stdout + done.stderr
    assert str(installed.parent) in done.stdout.replace("\n", ""), \
        "the catalog listed is the installed one"
    from chaos_lab.model import catalog

    for name in catalog():
        assert name in done.stdout
    assert _run(installed / "chaos-shop", "experiment", "validate", cwd=empty).returncode == 0
    schema = _run(installed / "chaos-shop", "experiment", "schema", cwd=empty)
    assert schema.returncode == 0 and '"chaos-shop experiment file"' in schema.stdout
    assert not list(empty.iterdir()), "nothing written where it ran"


def test_validate_a_bad_file_says_every_problem(installed: Path, empty: Path) -> None:
    (empty / "bad.yaml").write_text(BAD)
    done = _run(installed / "chaos-shop", "experiment", "validate", "bad.yaml", cwd=empty)
    assert done.returncode == 2
    lines = done.stdout.splitlines()
    assert lines == [
        "bad.yaml:1: name: String should match pattern '^[a-z0-9][a-z0-9-]*$'",
        "bad.yaml:1: fragile: missing (required)",
        "bad.yaml:2: fault.name: Input should be 'failover', 'db-outage', 'brownout', "
        + lines[2].split("'brownout', ", 1)[1],
        "bad.yaml:3: timing: timing.fault_at (40) must come before the end of the traffic "
        "(timing.duration 30)",
        "bad.yaml:4: hypothesis.max_failed_requests: missing (required)",
        "bad.yaml:4: hypothesis.max_failed: unknown field (a typo?); did you mean "
        "max_failed_requests?",
    ] and "1 of 1 file invalid, 6 problems" in done.stderr
