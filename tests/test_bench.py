"""The bench's own arithmetic and its wrk parsing, on a real wrk run against the ceiling app.
The figures themselves come from `chaos-shop bench`, not from tests."""

import sys
from collections.abc import Iterator
from functools import partial

import pytest

from chaos_lab.bench.runner import ENQUEUE_ALONE, QUEUED, Figures, WrkResult, parse_wrk, wrk
from chaos_lab.local.lab import get_ok
from chaos_lab.processes import LabError, free_port, spawn, stop_process, wait_until


@pytest.fixture(scope="module")
def ceiling(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("ceiling")
    body = root / "body.json"
    body.write_bytes(b'{"products": []}')
    port = free_port()
    proc = spawn([sys.executable, "-m", "uvicorn", "chaos_lab.bench.ceiling:app", "--port",
                  str(port), "--lifespan", "off"], root / "ceiling.log",
                 env={"BENCH_BODY_FILE": str(body)})
    url = f"http://127.0.0.1:{port}"
    wait_until(partial(get_ok, url), "ceiling app")
    yield url
    stop_process(proc)


def test_wrk_figures_from_a_real_run(ceiling: str) -> None:
    result = wrk(f"{ceiling}/products", 1, 4)
    assert result.requests_per_second > 100
    assert 0 < result.p50_ms <= result.p99_ms < 1000
    assert result.non_2xx == 0 and result.socket_errors == 0


def test_wrk_counts_errors_and_units() -> None:
    out = """Running 1s test @ http://x
  Latency Distribution
     50%  812.00us
     75%    1.20ms
     90%    2.00ms
     99%    1.50s
  10 requests in 1.00s, 1.00KB read
  Socket errors: connect 1, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 4
Requests/sec:   1234.50
"""
    assert parse_wrk(out) == WrkResult(1234.5, 0.812, 1500.0, 4, 6)


def test_ratio_is_the_median_of_paired_runs() -> None:
    def r(rps: float) -> WrkResult:
        return WrkResult(rps, 1, 2, 0, 0)

    figures = Figures("m", 3, 1, 1, catalog={
        "shop": [r(100), r(300), r(200)], "baseline": [r(50), r(100), r(20)],
        "ceiling": [r(400), r(400), r(400)]})
    assert figures.ratio("shop", "baseline") == 3.0  # 2, 3, 10
    assert figures.ratio("shop", "ceiling") == 0.5
    assert "**3.00x**" in figures.markdown() and "**50%**" in figures.markdown()


def test_no_figures_is_an_error() -> None:
    with pytest.raises(LabError, match="wrk gave no figures"):
        parse_wrk("unable to connect")


def test_markdown_shows_only_the_parts_that_ran() -> None:
    figures = Figures("m", 1, 1, 1, drain=(1000, 50.0), rss_mib={"worker": 90.0})
    text = figures.markdown()
    assert "**20 orders/s**" in text and "| worker | 90 |" in text
    assert "Catalog" not in text and "POST /orders" not in text and "Degraded" not in text


def test_queued_order_cost_beyond_its_aws_calls() -> None:
    figures = Figures("m", 1, 1, 1, degraded_ms={QUEUED: (12.0, 20.0), ENQUEUE_ALONE: (10.0, 15.0)})
    assert "**2.00 ms** at p50 (1.20x the calls alone)" in figures.markdown()
