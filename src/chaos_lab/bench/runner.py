"""``chaos-shop bench``: the shop's figures against a sync baseline and the machine's ceiling.

Every figure is the median of several runs, and every comparison is a ratio measured in the
same run on the same machine (interleaved: baseline, shop, ceiling, baseline, ...), because
these machines are shared and noisy. Load comes from wrk (Debian's package).
"""

from __future__ import annotations

import asyncio
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import aioboto3
import asyncpg
import httpx

from chaos_lab import processes
from chaos_lab.bench import BenchPart, generators, overload
from chaos_lab.bench import faults as fault_part
from chaos_lab.experiment import NO_DEGRADATION
from chaos_lab.local import aws as lab_aws
from chaos_lab.local.aws import purge
from chaos_lab.local.lab import ORDERS_FLEET, Lab, get_ok
from chaos_lab.processes import (
    PG_BIN,
    LabError,
    free_port,
    spawn,
    stop_process,
    wait_until,
)
from chaos_lab.targets.base import RESILIENT, Say, fetch_from
from shop.aws import client_config
from shop.order_records import OrderRecords
from shop.orders import OrderRequest
from shop.settings import Settings

HERE = Path(__file__).parent
QUEUED = "order queued, 202 (breaker open)"
ENQUEUE_ALONE = "its one AWS call alone (OrderRecords.accept, no HTTP, same emulator)"
BIG_STOCK = 1_000_000
HOT = "1 hot product"
ORDERS_PROCESSES = 2  # uvicorn worker processes of the benched orders service


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def parse_wrk(output: str) -> WrkResult:
    """wrk's --latency report: requests/sec, the 50% and 99% lines, errors."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    if not (rps and p50 and p99):
        raise LabError(f"wrk gave no figures:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       output)
    return WrkResult(float(rps.group(1)), _ms(p50.group(1)), _ms(p99.group(1)),
                     int(non_2xx.group(1)) if non_2xx else 0,
                     sum(int(g) for g in errors.groups()) if errors else 0)


def wrk(url: str, seconds: float, connections: int, script: list[str] | None = None) -> WrkResult:
    binary = shutil.which("wrk")
    if binary is None:
        raise LabError("wrk is not installed (bash scripts/setup.sh installs it)")
    cmd = [binary, "-t2", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "5s", "--latency"]
    if script:
        cmd += ["-s", script[0], url, "--", *script[1:]]
    else:
        cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=False)
    if out.returncode:
        raise LabError(f"wrk failed: {out.stderr or out.stdout}")
    return parse_wrk(out.stdout)


@dataclass
class Figures:
    """What the bench measured; ``markdown`` renders it for BENCHMARKS.md."""

    machine: str
    runs: int
    seconds: float
    connections: int
    catalog: dict[str, list[WrkResult]] = field(default_factory=dict)
    orders: dict[str, list[WrkResult]] = field(default_factory=dict)
    oversold: dict[str, bool] = field(default_factory=dict)
    # Orders answered 202 during those runs (taken into the order table: the database was
    # late past SHOP_FALLBACK_AFTER_SECONDS), with no fault on: spurious fallbacks.
    fallbacks: dict[str, int] = field(default_factory=dict)
    # pgbench running the order function (one hot product) on the same database, each run
    # right after the shop's: transactions per second.
    pgbench_tps: list[float] = field(default_factory=list)
    degraded_ms: dict[str, tuple[float, float]] = field(default_factory=dict)
    drain: tuple[int, float] | None = None
    rss_mib: dict[str, float] = field(default_factory=dict)
    faults: list[fault_part.FaultRow] = field(default_factory=list)
    generators: list[generators.Result] = field(default_factory=list)
    overload: list[overload.Curve] = field(default_factory=list)
    overload_png: Path | None = None

    @staticmethod
    def median(results: list[WrkResult], attr: str) -> float:
        return float(statistics.median(getattr(r, attr) for r in results))

    def ratio(self, a: str, b: str) -> float:
        """Median over runs of a/b throughput, each pair measured back to back."""
        pairs = zip(self.catalog[a], self.catalog[b], strict=True)
        return float(statistics.median(x.requests_per_second / y.requests_per_second
                                       for x, y in pairs))

    def markdown(self) -> str:
        """The parts that ran, in the issue's order."""
        m = self.median
        lines = [f"Machine: {self.machine}. Medians of {self.runs} runs of {self.seconds:g} s, "
                 f"wrk -t2 -c{self.connections}."]
        if self.catalog:
            lines += ["", "### 1. Catalog `GET /products`", "",
                      "| server | req/s | p50 ms | p99 ms | errors |",
                      "| --- | ---: | ---: | ---: | ---: |"]
            names = {"baseline": "baseline: Flask + gunicorn sync (2) + pg8000, SELECT 1 ping",
                     "shop": "shop: catalog, uvicorn (2 workers) + asyncpg pool",
                     "ceiling": "ceiling: uvicorn (2 workers), same bytes from memory"}
            for key, label in names.items():
                rs = self.catalog[key]
                errors = sum(r.non_2xx + r.socket_errors for r in rs)
                lines.append(f"| {label} | {m(rs, 'requests_per_second'):.0f} | "
                             f"{m(rs, 'p50_ms'):.2f} | {m(rs, 'p99_ms'):.2f} | {errors} |")
            lines += ["", f"shop / baseline throughput: **{self.ratio('shop', 'baseline'):.2f}x**"
                      f" (goal 5x); shop / ceiling: **{self.ratio('shop', 'ceiling'):.0%}** "
                      "(goal 50%)"]
        if self.orders:
            lines += ["", f"### 2. `POST /orders` (orders service, {ORDERS_PROCESSES} uvicorn "
                      "processes)", "",
                      "| products | req/s | p50 ms | p99 ms | errors | oversold | "
                      "spurious fallbacks (202, no fault) |",
                      "| --- | ---: | ---: | ---: | ---: | --- | ---: |"]
            for key, rs in self.orders.items():
                errors = sum(r.non_2xx + r.socket_errors for r in rs)
                lines.append(f"| {key} | {m(rs, 'requests_per_second'):.0f} | "
                             f"{m(rs, 'p50_ms'):.2f} | {m(rs, 'p99_ms'):.2f} | {errors} | "
                             f"{'YES' if self.oversold[key] else 'no'} | "
                             f"{self.fallbacks.get(key, 0)} |")
            if self.pgbench_tps:
                shop = self.orders[HOT]
                pairs = zip(shop, self.pgbench_tps, strict=True)
                ratio = statistics.median(r.requests_per_second / t for r, t in pairs)
                lines += ["", f"pgbench, the same order function on one hot product, same "
                          f"database and connections: "
                          f"{statistics.median(self.pgbench_tps):.0f} tps; the shop reaches "
                          f"**{ratio:.0%}** of it (goal 50%)"]
        if self.degraded_ms:
            lines += ["", "### 3. Degraded paths, database gone (single requests in sequence)",
                      "", "| path | p50 ms | p99 ms |", "| --- | ---: | ---: |"]
            for key, (p50, p99) in self.degraded_ms.items():
                lines.append(f"| {key} | {p50:.2f} | {p99:.2f} |")
            queued, alone = self.degraded_ms.get(QUEUED), self.degraded_ms.get(ENQUEUE_ALONE)
            if queued and alone:
                lines += ["", f"A queued order's own cost beyond its two AWS calls: "
                          f"**{queued[0] - alone[0]:.2f} ms** at p50 ({queued[0] / alone[0]:.2f}x "
                          "the calls alone)"]
        if self.drain:
            count, seconds = self.drain
            lines += ["", "### 4. Worker drain", "",
                      f"{count} queued orders applied in {seconds:.1f} s: "
                      f"**{count / seconds:.0f} orders/s**"]
        if self.faults:
            lines += ["", *fault_part.markdown(self.faults)]
        if self.generators:
            lines += ["", "### 7. Load generators: what each can offer here", "",
                      generators.markdown(self.generators)]
        if self.overload:
            lines += ["", "### 8. Overload: offered load against goodput", "",
                      f"{self.seconds:g} s per step, from a reset lab; the picture: "
                      f"{self.overload_png}", "", overload.markdown(self.overload)]
        lines += ["", "### 5. Resident memory after the run", "", "| process | RSS MiB |",
                  "| --- | ---: |"]
        lines += [f"| {k} | {v:.0f} |" for k, v in self.rss_mib.items()]
        return "\n".join(lines) + "\n"


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def _resident() -> list[tuple[int, int, float]]:
    """(pid, parent pid, resident MiB) of every process."""
    out = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        out.append((int(fields["Pid"]), int(fields.get("PPid", 0)),
                    int(fields.get("VmRSS", "0 kB").split()[0]) / 1024))
    return out


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn's workers), MiB."""
    return sum(mib for own, parent, mib in _resident() if pid in (own, parent))


def rss_per_process(pid: int) -> list[float]:
    """Resident memory of each of uvicorn's worker processes under ``pid``, MiB (not its
    multiprocessing resource tracker)."""
    out = []
    for own, parent, mib in _resident():
        if parent == pid:
            with suppress(OSError):
                if b"--multiprocessing-fork" in Path(f"/proc/{own}/cmdline").read_bytes():
                    out.append(mib)
    return out


class Bench:
    def __init__(self, lab: Lab, runs: int, seconds: float, connections: int,
                 say: Say = print) -> None:
        self.lab, self.runs, self.seconds, self.connections = lab, runs, seconds, connections
        self.say = say
        self.procs: list[subprocess.Popen[bytes]] = []
        self.figures = Figures(machine(), runs, seconds, connections)

    def _serve(self, name: str, cmd: list[str], env: dict[str, str], ready: str) -> str:
        port = free_port()
        cmd = [part.format(port=port) for part in cmd]
        proc = spawn(cmd, self.lab.root / "logs" / f"bench-{name}.log", env=env)
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_until(partial(get_ok, url + ready), f"bench {name}", timeout=60)
        return url

    def catalog(self) -> None:
        lab = self.lab
        bouncer = lab.bouncer
        env = lab.service_env(dict(RESILIENT))
        shop = self._serve("catalog", [sys.executable, "-m", "uvicorn", "catalog.main:app",
                                       "--port", "{port}", "--workers", "2", "--no-access-log",
                                       "--log-level", "warning"], env, "/health/deep")
        body = httpx.get(f"{shop}/products", timeout=5).content
        body_file = lab.root / "bench-products.json"
        body_file.write_bytes(body)
        ceiling = self._serve("ceiling", [sys.executable, "-m", "uvicorn",
                                          "chaos_lab.bench.ceiling:app", "--port", "{port}",
                                          "--workers", "2", "--lifespan", "off",
                                          "--no-access-log", "--log-level", "warning"],
                              {"BENCH_BODY_FILE": str(body_file)}, "/products")
        gunicorn = [sys.executable, "-m", "gunicorn", "-w", "2", "-k", "sync", "-b",
                    "127.0.0.1:{port}", "--log-level", "warning", "chaos_lab.bench.baseline:app"]
        baseline = self._serve("baseline", gunicorn,
                               {"BENCH_DB": f"127.0.0.1:{bouncer.port}:shop:shop_reader",
                                "BENCH_DB_PASSWORD_FILE": str(lab.password_file("shop"))},
                               "/products")
        urls = {"baseline": baseline, "shop": shop, "ceiling": ceiling}
        for url in urls.values():  # warm up: connections, imports, caches
            wrk(f"{url}/products", 2, self.connections)
        for run in range(1, self.runs + 1):
            for key, url in urls.items():
                result = wrk(f"{url}/products", self.seconds, self.connections)
                self.figures.catalog.setdefault(key, []).append(result)
                self.say(f"catalog run {run}/{self.runs} {key}: "
                         f"{result.requests_per_second:.0f} req/s p99 {result.p99_ms:.1f} ms")

    async def orders(self) -> None:
        """The orders service with 2 uvicorn processes (the issue's set-up), each run on one
        hot product followed by pgbench running the same single-order function."""
        lab = self.lab
        await asyncio.to_thread(lab.migrate)  # a lab started by older code lacks the newest
        env = lab.service_env(dict(RESILIENT))
        shop = await asyncio.to_thread(
            self._serve, "orders", [sys.executable, "-m", "uvicorn", "orders.main:app", "--port",
                                    "{port}", "--workers", str(ORDERS_PROCESSES),
                                    "--no-access-log", "--log-level", "warning"],
            env, "/health/deep")
        supervisor = self.procs[-1].pid
        url = f"{shop}/orders"
        script = str(HERE / "order.lua")
        await self._set_stock(BIG_STOCK)
        await asyncio.to_thread(wrk, url, 2, self.connections, [script, "1"])  # warm-up
        for key, spread in ((HOT, 1), ("spread over 10", 10)):
            for run in range(1, self.runs + 1):
                await self._set_stock(BIG_STOCK)
                await asyncio.to_thread(purge, lab.moto.url, lab.resources)
                result = await asyncio.to_thread(wrk, url, self.seconds, self.connections,
                                                 [script, str(spread)])
                self.figures.orders.setdefault(key, []).append(result)
                oversold = await self._oversold()
                self.figures.oversold[key] = self.figures.oversold.get(key, False) or oversold
                fallbacks = await asyncio.to_thread(self._accepted_while_out)
                self.figures.fallbacks[key] = self.figures.fallbacks.get(key, 0) + fallbacks
                self.say(f"orders run {run}/{self.runs} {key}: "
                         f"{result.requests_per_second:.0f} req/s, oversold: {oversold}, "
                         f"fallbacks: {fallbacks}")
                if spread == 1:
                    await self._set_stock(BIG_STOCK)
                    tps = await asyncio.to_thread(self._pgbench)
                    self.figures.pgbench_tps.append(tps)
                    self.say(f"pgbench run {run}/{self.runs}, same function: {tps:.0f} tps")
        for i, mib in enumerate(rss_per_process(supervisor), start=1):
            self.figures.rss_mib[f"orders (bench, process {i} of {ORDERS_PROCESSES})"] = mib
        await lab.reset()

    def _accepted_while_out(self) -> int:
        """Orders in the order table (accepted there instead of the database), keys aside."""
        table = self.lab.resources.status_table
        dynamodb = lab_aws.client("dynamodb", self.lab.moto.url)
        pages = dynamodb.get_paginator("scan").paginate(
            TableName=table, Select="COUNT",
            FilterExpression="NOT begins_with(order_id, :key)",
            ExpressionAttributeValues={":key": {"S": "key#"}})
        return sum(page["Count"] for page in pages)

    def _pgbench(self) -> float:
        """pgbench calling the single-order function on the hot product, one transaction per
        order: what the database alone does with the shop's transaction (the writer,
        synchronous standby and all), the yardstick the shop's group commit is held to."""
        script = self.lab.root / "bench-order.sql"
        script.write_text("SELECT place_order(gen_random_uuid(), 2, 1, NULL);\n")
        script.chmod(0o644)
        out = processes.run(
            [str(PG_BIN / "pgbench"), "-h", "127.0.0.1", "-p", str(self.lab.primary.port),
             "-U", "shop", "-n", "-c", str(self.connections), "-j", "2",
             "-T", str(int(self.seconds)), "-f", str(script), "shop"],
            service_user=True, timeout=self.seconds + 60,
            env={"PGPASSWORD": self.lab.primary.password()})
        found = re.search(r"^tps = ([\d.]+)", out.stdout, re.MULTILINE)
        if found is None:
            raise LabError(f"pgbench printed no tps: {out.stdout[-500:]}")
        return float(found.group(1))

    async def _set_stock(self, stock: int) -> None:
        conn = await asyncpg.connect(self.lab.primary.dsn(with_password=True), timeout=5)
        try:
            # One transaction: an order still in flight waits for it, then counts.
            async with conn.transaction():
                await conn.execute("TRUNCATE orders")
                await conn.execute("UPDATE products SET stock = $1", stock)
        finally:
            await conn.close()

    async def _oversold(self) -> bool:
        """Stock below zero, or stock that does not add up to the confirmed orders."""
        rows = await fetch_from(
            self.lab.primary.dsn(with_password=True),
            "SELECT count(*) AS bad FROM products p WHERE p.stock < 0 OR p.stock <> $1 - "
            "(SELECT coalesce(sum(quantity), 0) FROM orders o "
            " WHERE o.product_id = p.id AND o.status = 'confirmed')", BIG_STOCK)
        return bool(rows[0]["bad"])

    async def degraded(self, samples: int = 200) -> None:
        """With the proxy's target gone: once the breaker is open, a read is served from
        the DynamoDB copy and an order queued without waiting for the database."""
        lab = self.lab
        await lab.reset()
        async with httpx.AsyncClient(timeout=10) as client:
            await client.get(f"{lab.entry_url}/products")  # fill the catalog copy
            await asyncio.sleep(1)
            await asyncio.to_thread(lab.bouncer.lose_target)
            try:
                for _ in range(5):  # trip the breakers
                    await client.get(f"{lab.service_url('catalog')}/products")
                    await client.post(f"{lab.service_url(ORDERS_FLEET[0])}/orders",
                                      json={"product_id": 2, "quantity": 1})
                reads = await _latencies(client, "GET", f"{lab.service_url('catalog')}/products",
                                         samples, expect="cache")
                writes = await _latencies(client, "POST",
                                          f"{lab.service_url(ORDERS_FLEET[0])}/orders", samples,
                                          expect="queue")
                # Right after, in the same conditions (database out, the worker idle).
                alone = await self._enqueue_alone(samples)
            finally:
                await asyncio.to_thread(lab.bouncer.restore_target)
        self.figures.degraded_ms["read from cache (breaker open)"] = _p50_p99(reads)
        self.figures.degraded_ms[QUEUED] = _p50_p99(writes)
        self.figures.degraded_ms[ENQUEUE_ALONE] = _p50_p99(alone)
        # Without the breaker and the fallbacks: every request waits out the retry budget.
        await asyncio.to_thread(lab.start_services, NO_DEGRADATION, lambda *_: None)
        await asyncio.to_thread(lab.bouncer.lose_target)
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                reads = await _latencies(client, "GET",
                                         f"{lab.service_url('catalog')}/products", 5)
        finally:
            await asyncio.to_thread(lab.bouncer.restore_target)
            await asyncio.to_thread(lab.start_services, dict(RESILIENT), lambda *_: None)
        self.figures.degraded_ms["read, no breaker (503 after the retry budget)"] = \
            _p50_p99(reads)
        await lab.reset()

    async def _enqueue_alone(self, samples: int) -> list[float]:
        """The floor under a queued order: ``OrderRecords.accept`` on its own (its one AWS
        call: the wake-up goes after the answer), from this process, with the services'
        client settings, on the same emulator."""
        env = self.lab.service_env(dict(RESILIENT))
        session = aioboto3.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                                   aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                                   region_name=env["AWS_DEFAULT_REGION"])
        config = client_config(Settings())
        endpoint = env["AWS_ENDPOINT_URL"]
        async with session.client("sqs", endpoint_url=endpoint, config=config) as sqs, \
                session.client("dynamodb", endpoint_url=endpoint, config=config) as dynamodb:
            records = OrderRecords(dynamodb, env["SHOP_ORDER_STATUS_TABLE"])
            await sqs.get_queue_attributes(QueueUrl=env["SHOP_ORDER_QUEUE_URL"])  # warm-up
            await records.accept(OrderRequest(uuid.uuid4(), 2, 1))  # warm-up: connections
            out = []
            for _ in range(samples):
                start = time.perf_counter()
                await records.accept(OrderRequest(uuid.uuid4(), 2, 1))
                out.append((time.perf_counter() - start) * 1000)
        return out

    async def drain(self, count: int = 1000) -> None:
        """The worker's drain rate from a backlog of ``count`` queued orders."""
        lab = self.lab
        await self._set_stock(BIG_STOCK)
        await asyncio.to_thread(lab.stop_worker)
        await asyncio.to_thread(lab.bouncer.lose_target)
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                semaphore = asyncio.Semaphore(20)

                async def order(i: int) -> int:
                    async with semaphore:
                        r = await client.post(f"{lab.service_url(ORDERS_FLEET[0])}/orders",
                                              json={"product_id": 1 + i % 10, "quantity": 1})
                        return r.status_code

                codes = await asyncio.gather(*(order(i) for i in range(count)))
        finally:
            await asyncio.to_thread(lab.bouncer.restore_target)
        queued = codes.count(202)
        self.say(f"drain: {queued} of {count} orders queued; starting the worker")
        start = time.monotonic()
        await asyncio.to_thread(lab.start_worker)
        conn = await asyncpg.connect(lab.primary.dsn(with_password=True), timeout=5)
        try:
            while time.monotonic() - start < 300:
                done = await conn.fetchval(
                    "SELECT count(*) FROM orders WHERE status <> 'pending'")
                if done >= queued:
                    break
                await asyncio.sleep(0.2)
        finally:
            await conn.close()
        self.figures.drain = (queued, time.monotonic() - start)
        await lab.reset()

    def memory(self) -> None:
        for name in ("catalog", "worker"):
            pid = self.lab.s.pids.get(name)
            if pid:
                self.figures.rss_mib[f"{name} (lab, 1 process)"] = rss_mib(pid)
        for name in ORDERS_FLEET:
            for pid in self.lab.orders_workers(name):
                self.figures.rss_mib[f"{name} (lab, its worker process)"] = rss_mib(pid)

    def close(self) -> None:
        for proc in self.procs:
            stop_process(proc)


async def _latencies(client: httpx.AsyncClient, method: str, url: str, samples: int,
                     expect: str | None = None) -> list[float]:
    out = []
    for _ in range(samples):
        start = time.perf_counter()
        response = await client.request(method, url, json={"product_id": 2, "quantity": 1}
                                        if method == "POST" else None)
        out.append((time.perf_counter() - start) * 1000)
        if expect and response.json().get("source") != expect:
            raise LabError(f"{method} {url} answered {response.status_code} "
                           f"{response.text[:200]}, not from the {expect}")
    return out


def _p50_p99(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return (statistics.median(ordered), ordered[min(len(ordered) - 1,
                                                    int(len(ordered) * 0.99))])


PARTS = tuple(part.value for part in BenchPart)


def run(lab: Lab, runs: int = 3, seconds: float = 10, connections: int = 50,
        say: Say = print, parts: tuple[str, ...] = PARTS) -> Figures:
    bench = Bench(lab, runs, seconds, connections, say)
    try:
        if "catalog" in parts:
            bench.catalog()
        if "orders" in parts:
            asyncio.run(bench.orders())
        if "degraded" in parts:
            asyncio.run(bench.degraded())
        if "drain" in parts:
            asyncio.run(bench.drain())
        if "faults" in parts:
            bench.figures.faults = asyncio.run(fault_part.measure(lab, say=say))
        if "generators" in parts:
            bench.figures.generators = generators.measure(f"{lab.entry_url}", say=say)
        if "overload" in parts:
            bench.figures.overload = overload.measure(lab, seconds, say=say)
            png = Path("reports") / "bench-overload.png"
            png.parent.mkdir(exist_ok=True)
            overload.plot(bench.figures.overload, png)
            bench.figures.overload_png = png
        bench.memory()
    finally:
        bench.close()
    return bench.figures
