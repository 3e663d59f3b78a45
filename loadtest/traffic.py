"""The experiments' traffic generator: an open-loop mix of catalog reads and orders, from
clients that retry like real ones.

Open loop: requests start on schedule whether or not earlier ones finished, so a hanging
database shows up as failures instead of quietly lowering the load. Every order carries its
own Idempotency-Key (and every run its own bearer credential, which scopes the keys), and a
request that fails (a timeout, a refused connection: status 0; or any 5xx) is tried again
with the same key and body after a jittered exponential backoff, ``max_tries`` tries at
most and within a retry budget (a fifth of the requests, plus a reserve), as a careful
client does. Every try is recorded (the timeline, the latency, the answer audit); a request
counts as failed when its last try failed. It prints a STATUS line as it goes and a RESULTS
block at the end.

    python -m loadtest.traffic http://127.0.0.1:8080 --duration 60
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import httpx

from shop.clients import client_of
from shop.orders import OrderRequest

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
    max_tries: int = 3  # a request and its retries, on a timeout or a 5xx
    retry_base: float = 0.5  # seconds before the 2nd try; doubling, with jitter
    # The retry budget (the SRE book's): retries at most this share of the requests, plus a
    # reserve, so that clients in trouble do not multiply the load on a shop in trouble.
    retry_ratio: float = 0.2
    retry_reserve: float = 20.0

    def scaled(self, factor: float) -> TrafficProfile:
        return replace(self, reads_per_second=self.reads_per_second * factor,
                       writes_per_second=self.writes_per_second * factor)


def backoff(tried: int, base: float) -> float:
    """Seconds before the next try, after ``tried`` tries: exponential with "equal jitter"
    (half fixed, half random: retries of many clients spread out, none comes back at once)."""
    ceiling = base * 2.0 ** (tried - 1)
    return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass(frozen=True)
class Outcome:
    """One try of a request."""

    at: float  # seconds since the traffic started
    kind: Kind
    status: int  # 0: timeout or connection error
    source: str | None = None  # database, cache or queue
    order_id: str | None = None  # a write's order (the one its key and body name)
    latency_ms: float = 0.0
    request: int = 0  # which request: its tries share it
    attempt: int = 1
    final: bool = True  # the request's last try

    @property
    def failed(self) -> bool:
        return self.status == 0 or self.status >= 500

    @property
    def label(self) -> str:
        """The outcome's class in tables and plots."""
        if self.failed:
            return f"{self.kind}_fail"
        if self.kind == "read":
            return "read_cache" if self.source == "cache" else "read_ok"
        return {201: "write_ok", 202: "write_queued", 409: "write_409"}.get(
            self.status, "write_other")


@dataclass
class TrafficResults:
    outcomes: list[Outcome] = field(default_factory=list)  # every try

    def count(self, label: str) -> int:
        return sum(1 for o in self.outcomes if o.label == label)

    @property
    def counts(self) -> dict[str, int]:
        labels = ["read_ok", "read_cache", "read_fail", "write_ok", "write_queued",
                  "write_409", "write_other", "write_fail"]
        return {label: self.count(label) for label in labels}

    def failed_requests(self, kind: Kind | None = None) -> int:
        """Requests whose last try failed: what the customer was left with."""
        return sum(1 for o in self.outcomes
                   if o.final and o.failed and (kind is None or o.kind == kind))

    @property
    def retries(self) -> int:
        return sum(1 for o in self.outcomes if o.attempt > 1)

    def status_line(self, now: float) -> str:
        c = self.counts
        return (f"STATUS t={now:5.0f}s reads={c['read_ok'] + c['read_cache']}/{c['read_fail']}"
                f" (cache={c['read_cache']}) writes_ok={c['write_ok']}"
                f" writes_409={c['write_409']} writes_202={c['write_queued']}"
                f" writes_fail={c['write_fail']} retries={self.retries}")

    def results_block(self) -> str:
        c = self.counts
        lines = [
            "RESULTS (every try)",
            f"  reads:  ok={c['read_ok']} cache={c['read_cache']} fail={c['read_fail']}",
            f"  writes: ok={c['write_ok']} queued(202)={c['write_queued']} "
            f"409={c['write_409']} other={c['write_other']} fail={c['write_fail']}",
            f"  retries: {self.retries}; requests failed after every try: "
            f"{self.failed_requests('read')} reads, {self.failed_requests('write')} writes",
        ]
        return "\n".join(lines)

    def writes(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.kind == "write"]

    def accepted_orders(self) -> list[Outcome]:
        """The last tries the shop said yes to (201) or took for later (202)."""
        return [o for o in self.outcomes if o.kind == "write" and o.final
                and o.status in (201, 202) and o.order_id]


class Client:
    """One run's customers: its own credential (so that its keys are its own) and a fresh
    key per order."""

    def __init__(self, profile: TrafficProfile, credential: str | None = None) -> None:
        self.profile = profile
        self.credential = credential or f"chaos-lab-{secrets.token_hex(8)}"
        self.scope = client_of(self.credential, None)
        self.run = secrets.token_hex(4)
        self.retry_tokens = profile.retry_reserve
        self.retries_refused = 0  # retries the budget did not allow

    def order(self, n: int) -> tuple[OrderRequest, str]:
        key = f"{self.run}-{n}"
        p = self.profile
        return OrderRequest.new(p.product_id, p.quantity, key, self.scope), key

    async def request(self, http: httpx.AsyncClient, kind: Kind, n: int, started: float,
                      record: Callable[[Outcome], None]) -> None:
        """One request and its retries, each try recorded as it ends."""
        p = self.profile
        order, key = self.order(n) if kind == "write" else (None, None)
        self.retry_tokens = min(p.retry_reserve, self.retry_tokens + p.retry_ratio)
        for attempt in range(1, p.max_tries + 1):
            outcome = await self._try(http, kind, order, key, started)
            last = attempt == p.max_tries or not outcome.failed
            if not last and self.retry_tokens < 1:
                self.retries_refused += 1
                last = True  # the budget is spent: this request ends here
            record(replace(outcome, request=n, attempt=attempt, final=last))
            if last:
                return
            self.retry_tokens -= 1
            await asyncio.sleep(backoff(attempt, p.retry_base))

    async def _try(self, http: httpx.AsyncClient, kind: Kind, order: OrderRequest | None,
                   key: str | None, started: float) -> Outcome:
        at = time.monotonic() - started
        order_id = str(order.order_id) if order is not None else None
        try:
            if order is None:
                response = await http.get("/products")
            else:
                response = await http.post(
                    "/orders", json={"product_id": order.product_id,
                                     "quantity": order.quantity},
                    headers={"Idempotency-Key": key or "",
                             "Authorization": f"Bearer {self.credential}"})
            body: dict[str, Any] = {}
            if response.headers.get("content-type", "").startswith("application/json"):
                body = response.json()
            return Outcome(at, kind, response.status_code, body.get("source"), order_id,
                           round((time.monotonic() - started - at) * 1000, 1))
        except httpx.HTTPError:
            return Outcome(at, kind, 0, order_id=order_id,
                           latency_ms=round((time.monotonic() - started - at) * 1000, 1))


def schedule(profile: TrafficProfile) -> list[tuple[float, Kind]]:
    """When each request starts: evenly spaced reads and writes over the duration."""
    plan: list[tuple[float, Kind]] = []
    for rate, kind in ((profile.reads_per_second, "read"), (profile.writes_per_second, "write")):
        if rate > 0:
            count = int(profile.duration * rate)
            plan.extend((i / rate, kind) for i in range(count))  # type: ignore[misc]
    return sorted(plan)


async def generate(base_url: str, profile: TrafficProfile,
                   on_status: Callable[[str], None] = print, credential: str | None = None,
                   transport: httpx.AsyncBaseTransport | None = None) -> TrafficResults:
    results = TrafficResults()
    client = Client(profile, credential)
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=base_url, timeout=profile.timeout, limits=limits,
                                 transport=transport) as http:
        started = time.monotonic()
        pending: set[asyncio.Task[None]] = set()
        next_status = profile.status_every
        for n, (at, kind) in enumerate(schedule(profile)):
            delay = at - (time.monotonic() - started)
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.monotonic() - started
            if now >= next_status:
                on_status(results.status_line(now))
                next_status += profile.status_every
            task = asyncio.create_task(client.request(http, kind, n, started,
                                                      results.outcomes.append))
            pending.add(task)
            task.add_done_callback(pending.discard)
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
    parser.add_argument("--tries", type=int, default=3, help="tries per request, at most")
    args = parser.parse_args()
    if args.duration <= 0 or args.timeout <= 0 or args.reads < 0 or args.writes < 0 \
            or args.tries < 1:
        parser.error("duration and timeout must be positive, rates not negative, tries >= 1")
    profile = TrafficProfile(args.reads, args.writes, args.duration, args.timeout,
                             args.product, max_tries=args.tries)
    results = asyncio.run(generate(args.url, profile))
    print(results.results_block())


if __name__ == "__main__":
    main()
