"""The HTML report (report.html), opened in a real headless Chromium (Debian's, installed by
scripts/setup.sh) with no network at all: the DOM after its script has the verdict table's
rows, BEFORE and AFTER side by side, the audit, and every timeline decoded; the screenshot is
not blank. One page per experiment and one per gameday."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from chaos_lab.experiment import RunResult
from chaos_lab.journal import Gameday, Journal, new_folder
from chaos_lab.model import Hypothesis, Measured, Switches, judge

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(tmp_path: Path, page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if CHROMIUM is None:
        pytest.fail("no chromium: bash scripts/setup.sh installs Debian's")
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'chromium-profile'}",
         "--host-resolver-rules=MAP * ~NOTFOUND",  # no network: the page must not need it
         "--hide-scrollbars", "--virtual-time-budget=5000", *args, page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)


def run(label: str, failed: int, gating: bool, fault_on: tuple[float, float] = (6, 17),
        false_answers: int = 0) -> RunResult:
    """A run as the runner leaves it: 24 s of traffic, a fault from 6 s, breakers opening."""
    switches = Switches(proxy=False, degradation=False) if label == "BEFORE" else Switches()
    result = RunResult("db-outage", label, switches.model_dump(), "db-outage", 6, 10,
                       preset="short", gating=gating, steady_before=True, healthy_after=True,
                       failed=failed, retries=3, accepted=20, stock_start=100, stock_end=80,
                       stock_consistent=True, queue=0, dlq=0, fault_window=fault_on,
                       recovery_seconds=0.0, p50_during_fault_ms=4.0,
                       p99_during_fault_ms=800.0, false_answers=false_answers,
                       answers={"201": 15, "202": 5, "409": 0, "4xx": 0, "503": 0,
                                "unknown": 0})
    result.counts = {"read_ok": 60, "read_cache": 20, "read_fail": failed, "write_ok": 15,
                     "write_queued": 5, "write_409": 0, "write_other": 0, "write_fail": 0}
    result.timeline = [{"read_ok": 3, "write_ok": 1} if not 6 <= s < 16 else
                       {"read_cache": 2, "read_fail": 1, "write_queued": 1} for s in range(24)]
    result.latency = [{"p50": 4.0, "p99": 30.0 if not 6 <= s < 16 else 800.0}
                      for s in range(24)]
    result.breakers = [{"t": 0.5, "service": "catalog", "state": "closed"},
                       {"t": 7.1, "service": "catalog", "state": "open"},
                       {"t": 17.0, "service": "catalog", "state": "closed"}]
    if false_answers:
        result.false_examples = [{"order_id": "0b5f-example", "answer": 503, "attempt": 2,
                                  "final": "confirmed", "why": "503 after it was accepted"}]
    hypothesis = Hypothesis(max_failed_requests=0, max_p99_latency_ms=1000,
                            max_recovery_seconds=5)
    result.checks = judge(hypothesis, Measured(failed, 0, 800.0, 0.0, True, 0, True,
                                               p50_latency_ms=4.0, false_answers=false_answers))
    return result


def journal_of(folder: Path, runs: list[RunResult]) -> Journal:
    journal = Journal(new_folder(folder, "db-outage"), "db-outage", "short", "local",
                      "The database is out of reach", runs=runs)
    journal.end()
    return journal


def test_an_experiments_report_renders_in_chromium(tmp_path: Path) -> None:
    runs = [run("BEFORE", failed=12, gating=False, false_answers=1),
            run("AFTER", failed=0, gating=True)]
    journal = journal_of(tmp_path / "reports", runs)
    page = journal.folder / "report.html"
    html = page.read_text()
    # self-contained: nothing fetched (CSP says so too)
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html)
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert "default-src 'none'" in html

    dom = chromium(tmp_path, page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout
    checks = re.findall(r'<tr class="check">', text)
    assert len(checks) == len(runs[1].checks) == 8, "one verdict row per tolerance"
    assert "BEFORE: fragile settings" in text and "AFTER: resilient settings" in text
    assert "proxy=false degradation=false" in text and "proxy=true degradation=true" in text
    assert re.search(r"failed requests.*?<code>&lt;= 0</code>.*?12 <span class=\"fail\">FAIL"
                     r".*?0 <span class=\"pass\">ok", text, re.S)
    assert 'data-timelines="1/1"' in text, "the timeline PNG decoded"
    assert 'data-rendered="yes"' in text
    assert "503 after it was accepted" in text, "the audit's false answers"
    assert "sha256" not in text or "its sha256" in text
    assert "gating: BEFORE" not in text  # BEFORE violated as expected: no early end

    shot = tmp_path / "report.png"
    done = chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=1400,2400")
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    _not_blank(shot)


def test_a_gamedays_report_has_every_experiment(tmp_path: Path) -> None:
    book = Gameday.open(tmp_path / "reports", planned=2)
    book.add(journal_of(tmp_path / "reports", [run("AFTER", failed=0, gating=True)]))
    halted = run("AFTER", failed=0, gating=True)
    halted.end("halted", "by `chaos-shop halt` (pid 1 on here, now)")
    book.add(journal_of(tmp_path / "reports", [halted]))
    book.end()
    page = book.folder / "report.html"
    dom = chromium(tmp_path, page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert len(re.findall(r'<tr class="experiment-row">', dom.stdout)) == 2
    assert 'data-timelines="2/2"' in dom.stdout
    assert "halted: by `chaos-shop halt` (pid 1 on here, now)" in dom.stdout
    assert re.search(r"<h1>gameday <span class=\"badge fail verdict\">FAIL", dom.stdout)
    assert (book.folder / "gameday.json").exists()
    shot = tmp_path / "gameday.png"
    chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=1400,1600")
    _not_blank(shot)


def _not_blank(png: Path) -> None:
    image = Image.open(png).convert("RGB")
    assert image.size[0] >= 1000
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200, "text, tables and a chart drawn"
    pixels = image.width * image.height
    background = max(count for count, _ in colours)
    assert background < 0.9 * pixels, "not one colour over the page"
