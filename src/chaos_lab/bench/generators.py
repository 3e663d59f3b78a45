"""The bench's generators part: which load generator can offer a surge on this machine?

Each candidate offers GET requests open loop, at a target rate for a few seconds, to a target
that costs nothing (the lab's entry answers ``/health`` itself, in nginx), in a process of its
own: what it achieved (requests answered per second), how late its answers came (p99), and
what it cost (CPU seconds per thousand requests: on a 2-core machine that the shop shares,
the generator's CPU is taken from the shop). The candidates: the experiments' traffic
generator (httpx on asyncio), the same on uvloop, the same in two processes, Locust's
FastHttpUser with constant throughput, and loadtest.surge's HTTP/1.1 protocol on uvloop.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from chaos_lab.stats import percentile
from chaos_lab.targets.base import Say

RATES = (2000, 4000, 8000)
CANDIDATES = ("httpx", "httpx+uvloop", "httpx+uvloop x2", "locust FastHttpUser",
              "surge protocol+uvloop")
LOCUSTFILE = """
from locust import FastHttpUser, constant_throughput, task

class Offer(FastHttpUser):
    wait_time = constant_throughput(10)

    @task
    def health(self):
        self.client.get("/health")
"""


@dataclass(frozen=True)
class Result:
    candidate: str
    rate: int
    achieved: float  # answered per second
    p99_ms: float | None
    cpu_per_1000: float  # CPU seconds per thousand requests offered


async def _httpx(url: str, rate: float, seconds: float) -> tuple[int, list[float]]:
    import httpx

    latencies: list[float] = []
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=2000)
    async with httpx.AsyncClient(base_url=url, timeout=5, limits=limits) as client:
        async def one() -> None:
            sent = time.monotonic()
            try:
                await client.get("/health")
            except httpx.HTTPError:
                return
            latencies.append((time.monotonic() - sent) * 1000)

        tasks = set()
        start, count = time.monotonic(), int(rate * seconds)
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.ensure_future(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=10)
    return count, latencies


async def _surge_protocol(url: str, rate: float, seconds: float) -> tuple[int, list[float]]:
    from loadtest.surge import Surge

    generator = Surge(url, say=lambda _: None)
    generator._request = lambda n: b"GET /health HTTP/1.1\r\nHost: shop\r\n\r\n"  # type: ignore
    sweeping = asyncio.ensure_future(generator.pool.sweep())
    await generator.offer(rate, seconds)
    sweeping.cancel()
    tries = generator.report.tries
    return len(tries), [t.latency_ms for t in tries if t.status == 200]


def child(candidate: str, url: str, rate: float, seconds: float) -> None:
    """In the candidate's own process: offer, then print what came back (JSON)."""
    if "uvloop" in candidate:
        import uvloop

        uvloop.install()
    run = _surge_protocol if candidate.startswith("surge") else _httpx
    count, latencies = asyncio.run(run(url, rate, seconds))
    print(json.dumps({"count": count, "latencies": latencies}))


def _spawn(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _reap(proc: subprocess.Popen[str], seconds: float) -> tuple[str, float]:
    """Its output and the CPU (user + system) it used, itself and its children."""
    out = proc.stdout.read() if proc.stdout else ""
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    return out, usage.ru_utime + usage.ru_stime


def measure_one(candidate: str, url: str, rate: int, seconds: float) -> Result:
    if candidate.startswith("locust"):
        with tempfile.TemporaryDirectory() as folder:
            locustfile = Path(folder) / "offer.py"
            locustfile.write_text(LOCUSTFILE)
            users = max(1, rate // 10)
            proc = _spawn([sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
                           "-u", str(users), "-r", str(users), "-t", f"{seconds:g}s",
                           "--host", url, "--csv", str(Path(folder) / "stats"),
                           "--only-summary"])
            _, cpu = _reap(proc, seconds)
            stats = (Path(folder) / "stats_stats.csv").read_text().splitlines()
            header = stats[0].split(",")
            total = next(line.split(",") for line in stats if ",Aggregated," in line)
            row = dict(zip(header, total, strict=False))
            achieved = float(row["Requests/s"])
            p99 = float(row["99%"]) if row.get("99%") not in (None, "N/A") else None
            return Result(candidate, rate, round(achieved), p99,
                          round(cpu / max(achieved * seconds, 1) * 1000, 2))
    processes = 2 if candidate.endswith("x2") else 1
    procs = [_spawn([sys.executable, "-m", "chaos_lab.bench.generators", candidate, url,
                     str(rate / processes), str(seconds)]) for _ in range(processes)]
    count, latencies, cpu = 0, [], 0.0
    for proc in procs:
        out, used = _reap(proc, seconds)
        data = json.loads(out or '{"count": 0, "latencies": []}')
        count += data["count"]
        latencies += data["latencies"]
        cpu += used
    return Result(candidate, rate, round(len(latencies) / seconds),
                  percentile(latencies, 99) if latencies else None,
                  round(cpu / max(count, 1) * 1000, 2))


def measure(url: str, seconds: float = 5, say: Say = print) -> list[Result]:
    results = []
    for candidate in CANDIDATES:
        for rate in RATES:
            result = measure_one(candidate, url, rate, seconds)
            say(f"generators: {candidate} at {rate}/s: {result.achieved:g}/s answered, p99 "
                f"{result.p99_ms} ms, {result.cpu_per_1000:g} CPU s per 1000")
            results.append(result)
    return results


def markdown(results: list[Result]) -> str:
    lines = ["| generator | offered/s | answered/s | p99 ms | CPU s per 1000 requests |",
             "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r.candidate} | {r.rate} | {r.achieved:g} | "
              f"{'-' if r.p99_ms is None else f'{r.p99_ms:.1f}'} | {r.cpu_per_1000:g} |"
              for r in results]
    return "\n".join(lines)


if __name__ == "__main__":
    child(sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]))
