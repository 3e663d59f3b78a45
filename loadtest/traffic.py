"""The experiments' traffic generator: an open-loop mix of catalog reads and orders.

Open loop: requests start on schedule whether or not earlier ones finished, so a hanging
database shows up as failures instead of quietly lowering the load. A request that does not
complete within the client timeout, or cannot connect, counts as a failure (status 0), the
same as a 5xx. It prints a STATUS line as it goes and a RESULTS block at the end.

    python -m loadtest.traffic http://127.0.0.1:8080 --duration 60
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import httpx

Kind = Literal["read", "write"]


@dataclass(frozen=True)
class TrafficProfile:
    reads_per_second: float = 3.0
    writes_per_second: float = 1.0
    duration: float = 120.0
    timeout: float = 5.0
    product_id: int = 2
    quantity: int = 1
    status_every: float = 5.0

    def scaled(self, factor: float) -> TrafficProfile:
        return TrafficProfile(**{**asdict(self),
                                 "reads_per_second": self.reads_per_second * factor,
                                 "writes_per_second": self.writes_per_second * factor})


@dataclass(frozen=True)
class Outcome:
    at: float  # seconds since the traffic started
    kind: Kind
    status: int  # 0: timeout or connection error
    source: str | None = None  # database, cache or queue
    order_id: str | None = None
    latency_ms: float = 0.0

    @property
    def label(self) -> str:
        """The outcome's class in tables and plots."""
        if self.status == 0 or self.status >= 500:
            return f"{self.kind}_fail"
        if self.kind == "read":
            return "read_cache" if self.source == "cache" else "read_ok"
        return {201: "write_ok", 202: "write_queued", 409: "write_409"}.get(
            self.status, "write_other")


@dataclass
class TrafficResults:
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, label: str) -> int:
        return sum(1 for o in self.outcomes if o.label == label)

    @property
    def counts(self) -> dict[str, int]:
        labels = ["read_ok", "read_cache", "read_fail", "write_ok", "write_queued",
                  "write_409", "write_other", "write_fail"]
        return {label: self.count(label) for label in labels}

    def status_line(self, now: float) -> str:
        c = self.counts
        return (f"STATUS t={now:5.0f}s reads={c['read_ok'] + c['read_cache']}/{c['read_fail']}"
                f" (cache={c['read_cache']}) writes_ok={c['write_ok']}"
                f" writes_409={c['write_409']} writes_202={c['write_queued']}"
                f" writes_fail={c['write_fail']}")

    def results_block(self) -> str:
        c = self.counts
        lines = [
            "RESULTS",
            f"  reads:  ok={c['read_ok']} cache={c['read_cache']} fail={c['read_fail']}",
            f"  writes: ok={c['write_ok']} queued(202)={c['write_queued']} "
            f"409={c['write_409']} other={c['write_other']} fail={c['write_fail']}",
        ]
        return "\n".join(lines)

    def accepted_orders(self) -> list[Outcome]:
        """Orders the shop said yes to (201) or took for later (202)."""
        return [o for o in self.outcomes if o.kind == "write" and o.status in (201, 202)
                and o.order_id]


async def _one(client: httpx.AsyncClient, kind: Kind, profile: TrafficProfile,
               started: float) -> Outcome:
    at = time.monotonic() - started
    try:
        if kind == "read":
            response = await client.get("/products")
        else:
            response = await client.post("/orders", json={"product_id": profile.product_id,
                                                           "quantity": profile.quantity})
        body: dict[str, Any] = {}
        if response.headers.get("content-type", "").startswith("application/json"):
            body = response.json()
        return Outcome(at, kind, response.status_code, body.get("source"),
                       body.get("order_id"), round((time.monotonic() - started - at) * 1000, 1))
    except httpx.HTTPError:
        return Outcome(at, kind, 0, latency_ms=round((time.monotonic() - started - at) * 1000))


def schedule(profile: TrafficProfile) -> list[tuple[float, Kind]]:
    """When each request starts: evenly spaced reads and writes over the duration."""
    plan: list[tuple[float, Kind]] = []
    for rate, kind in ((profile.reads_per_second, "read"), (profile.writes_per_second, "write")):
        if rate > 0:
            count = int(profile.duration * rate)
            plan.extend((i / rate, kind) for i in range(count))  # type: ignore[misc]
    return sorted(plan)


async def generate(base_url: str, profile: TrafficProfile,
                   on_status: Callable[[str], None] = print) -> TrafficResults:
    results = TrafficResults()
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=base_url, timeout=profile.timeout,
                                 limits=limits) as client:
        started = time.monotonic()
        pending: set[asyncio.Task[Outcome]] = set()
        next_status = profile.status_every

        def collect(task: asyncio.Task[Outcome]) -> None:
            pending.discard(task)
            results.outcomes.append(task.result())

        for at, kind in schedule(profile):
            delay = at - (time.monotonic() - started)
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.monotonic() - started
            if now >= next_status:
                on_status(results.status_line(now))
                next_status += profile.status_every
            task = asyncio.create_task(_one(client, kind, profile, started))
            pending.add(task)
            task.add_done_callback(collect)
        if pending:
            await asyncio.wait(pending)
        on_status(results.status_line(time.monotonic() - started))
    results.outcomes.sort(key=lambda o: o.at)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the shop's entry URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--reads", type=float, default=3.0, help="reads per second")
    parser.add_argument("--writes", type=float, default=1.0, help="orders per second")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds")
    parser.add_argument("--timeout", type=float, default=5.0, help="client timeout, seconds")
    parser.add_argument("--product", type=int, default=2, help="product ordered")
    args = parser.parse_args()
    if args.duration <= 0 or args.timeout <= 0 or args.reads < 0 or args.writes < 0:
        parser.error("duration and timeout must be positive, rates not negative")
    profile = TrafficProfile(args.reads, args.writes, args.duration, args.timeout, args.product)
    results = asyncio.run(generate(args.url, profile))
    print(results.results_block())


if __name__ == "__main__":
    main()
