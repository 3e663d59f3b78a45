"""Experiments as data, in the spirit of chaostoolkit: a traffic profile, a fault, when and for
how long, the steady state checked before and after, a rollback that always runs, and the
invariants checked through the public API once the queue has drained."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import httpx

from chaos_lab.target import RESILIENT, Say, Target
from loadtest.traffic import Outcome, TrafficProfile, TrafficResults, generate


@dataclass(frozen=True)
class Experiment:
    name: str
    fault: str
    profile: TrafficProfile
    fault_at: float  # seconds after the traffic starts
    hold: float  # seconds the fault lasts before it is restored (0: restored after the run)
    fragile: dict[str, str]  # the BEFORE settings; AFTER is RESILIENT
    drain_timeout: float = 300.0  # a wait for the queue to empty, not a sleep


FRAGILE_FAILOVER = {"SHOP_ENABLE_PROXY": "false", "SHOP_ENABLE_DEGRADATION": "false"}
NO_DEGRADATION = {"SHOP_ENABLE_PROXY": "true", "SHOP_ENABLE_DEGRADATION": "false"}

EXPERIMENTS: dict[str, dict[str, Experiment]] = {
    "failover": {
        "default": Experiment("failover", "failover", TrafficProfile(duration=120),
                              fault_at=30, hold=0, fragile=FRAGILE_FAILOVER),
        "short": Experiment("failover", "failover", TrafficProfile(duration=20),
                            fault_at=6, hold=0, fragile=FRAGILE_FAILOVER),
    },
    "db-outage": {
        # 30 s healthy baseline, the 3-minute outage, then a minute of recovery.
        "default": Experiment("db-outage", "db-outage", TrafficProfile(duration=270),
                              fault_at=30, hold=180, fragile=NO_DEGRADATION),
        "short": Experiment("db-outage", "db-outage", TrafficProfile(duration=24),
                            fault_at=5, hold=10, fragile=NO_DEGRADATION),
    },
}


def experiment(name: str, preset: str = "default", scale: float = 1.0) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose from {sorted(EXPERIMENTS)}")
    if preset not in EXPERIMENTS[name]:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(EXPERIMENTS[name])}")
    if scale <= 0:
        raise ValueError("scale must be positive")
    spec = EXPERIMENTS[name][preset]
    return replace(spec, profile=spec.profile.scaled(scale)) if scale != 1 else spec


# One run ----------------------------------------------------------------------------------


@dataclass
class RunResult:
    experiment: str
    label: str  # BEFORE or AFTER
    settings: dict[str, str]
    fault_at: float
    hold: float
    counts: dict[str, int]
    accepted: int
    decided: dict[str, int]
    lost: int
    stock_start: int | None
    stock_end: int | None
    confirmed_quantity: int
    stock_consistent: bool | None
    unacknowledged_confirmed: int
    dlq: int
    queue: int
    steady_before: bool
    healthy_after: bool
    recovery_seconds: float | None  # fault to last failure; None: never recovered
    timeline: list[dict[str, int]] = field(default_factory=list)
    checked_in: str = "api"
    target: str = "local"
    drained_seconds: float | None = None  # restore to queue and DLQ empty; None: not measured

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("timeline")
        return data


async def run(target: Target, spec: Experiment, settings: dict[str, str], label: str,
              say: Say = print) -> RunResult:
    say(f"[{label}] {spec.name}: restarting the services ({_describe(settings)})")
    await target.apply(settings, say)
    await target.reset()
    profile = spec.profile
    stock_start = await _stock(target, profile.product_id)
    steady_before = await _steady(target)
    say(f"[{label}] steady state before: {'ok' if steady_before else 'NOT OK'}; "
        f"traffic {profile.reads_per_second:g} reads/s + {profile.writes_per_second:g} "
        f"writes/s for {profile.duration:g}s, {spec.fault} at t={spec.fault_at:g}s"
        + (f" held {spec.hold:g}s" if spec.hold else ""))
    traffic = asyncio.create_task(generate(target.entry_url, profile, on_status=say))
    drain: asyncio.Task[float | None] | None = None
    restored = False
    try:
        await asyncio.sleep(spec.fault_at)
        say(f"[{label}] >>> inject {spec.fault}")
        await target.inject(spec.fault, spec.hold, say)
        if spec.hold:
            await asyncio.sleep(spec.hold)
            say(f"[{label}] <<< restore {spec.fault}")
            restored = True
            await target.restore(spec.fault, say)
            drain = asyncio.create_task(_time_to_drain(target, spec.drain_timeout))
        results = await traffic
        drained = await drain if drain else None
    finally:
        for task in (traffic, drain):
            if task is not None and not task.done():
                task.cancel()
        if not restored:  # the rollback always runs
            say(f"[{label}] rollback: restore {spec.fault}")
            await target.restore(spec.fault, say)
    say(results.results_block())
    result = await verify(target, spec, settings, label, results, stock_start, steady_before,
                          say)
    result.drained_seconds = drained
    return result


async def verify(target: Target, spec: Experiment, settings: dict[str, str], label: str,
                 results: TrafficResults, stock_start: int | None, steady_before: bool,
                 say: Say) -> RunResult:
    """The steady state after, and the invariants, through the public API where it answers."""
    degradation = settings.get("SHOP_ENABLE_DEGRADATION", "true") == "true"
    if degradation:
        say(f"[{label}] waiting for the order queue to drain")
        deadline = time.monotonic() + spec.drain_timeout
        while time.monotonic() < deadline:
            depths = await _depths(target)
            if depths is not None and depths[0] == 0:
                break
            await asyncio.sleep(1)
    healthy_after = await _healthy_within(target, 30)
    accepted = results.accepted_orders()
    statuses, checked_in = await _order_statuses(target, [o.order_id or "" for o in accepted])
    decided = {s: sum(1 for v in statuses.values() if v == s)
               for s in ("confirmed", "rejected", "pending", "missing")}
    lost = sum(1 for v in statuses.values() if v not in ("confirmed", "rejected"))
    confirmed_quantity = decided["confirmed"] * spec.profile.quantity
    stock_end = await _stock(target, spec.profile.product_id)
    db_confirmed = await target.confirmed_in_db(spec.profile.product_id)
    # Where the database is out of reach (AWS), the API's confirmed orders are all we know.
    confirmed = decided["confirmed"] if db_confirmed is None else db_confirmed
    queue, dlq = await _depths(target) or (-1, -1)  # -1: the queue service did not answer
    result = RunResult(
        experiment=spec.name, label=label, settings=settings, fault_at=spec.fault_at,
        hold=spec.hold, counts=results.counts, accepted=len(accepted), decided=decided,
        lost=lost, stock_start=stock_start, stock_end=stock_end,
        confirmed_quantity=confirmed_quantity,
        stock_consistent=None if stock_end is None or stock_start is None else
        stock_start - stock_end == confirmed * spec.profile.quantity,
        unacknowledged_confirmed=max(0, confirmed - decided["confirmed"]),
        dlq=dlq, queue=queue,
        steady_before=steady_before, healthy_after=healthy_after,
        recovery_seconds=recovery_seconds(results, spec.fault_at),
        timeline=timeline(results), checked_in=checked_in, target=target.name,
    )
    say(f"[{label}] lost orders: {lost} of {len(accepted)} accepted; healthy after: "
        f"{healthy_after}; DLQ: {result.dlq}")
    return result


def recovery_seconds(results: TrafficResults, fault_at: float) -> float | None:
    """From the fault to the last failure (0: nothing failed). None when failures go on to
    the end of the run: the shop did not recover on its own.

    A failure counts when it was observed (its start plus its latency), not when its request
    started: a request sent just before the fault that times out because of it is the fault's.
    Failures observed before the fault are not the fault's (the steady state says so)."""
    failures = [_observed(o) for o in results.outcomes
                if o.label.endswith("_fail") and _observed(o) >= fault_at]
    if not failures:
        return 0.0
    end = max(_observed(o) for o in results.outcomes)
    last = max(failures)
    successes_after = [o for o in results.outcomes
                       if _observed(o) > last and not o.label.endswith("_fail")]
    if end - last < 5 and not successes_after:
        return None
    # at least 0.1 s: something failed, and the table must not say "0 s" for it
    return max(0.1, round(last - fault_at, 1))


def _observed(outcome: Outcome) -> float:
    """Seconds from the start of the traffic to the answer (or the timeout, or the error)."""
    return outcome.at + outcome.latency_ms / 1000


def timeline(results: TrafficResults) -> list[dict[str, int]]:
    """Outcomes per second, by label (what the PNG plots)."""
    if not results.outcomes:
        return []
    seconds = int(max(o.at for o in results.outcomes)) + 1
    rows: list[dict[str, int]] = [{} for _ in range(seconds)]
    for outcome in results.outcomes:
        row = rows[int(outcome.at)]
        row[outcome.label] = row.get(outcome.label, 0) + 1
    return rows


async def compare(target: Target, spec: Experiment, say: Say = print) -> list[RunResult]:
    before = await run(target, spec, spec.fragile, "BEFORE", say)
    after = await run(target, spec, dict(RESILIENT), "AFTER", say)
    return [before, after]


# Checks -----------------------------------------------------------------------------------


def _describe(settings: dict[str, str]) -> str:
    return ", ".join(f"{k.removeprefix('SHOP_').lower()}={v}" for k, v in settings.items())


async def _depths(target: Target) -> tuple[int, int] | None:
    """Queue and DLQ depths; None while the queue service does not answer (moto saturated by
    a drain at 10x traffic): a poll that failed, not a reason to abandon the experiment."""
    try:
        return await target.queue_depths()
    except Exception as exc:  # botocore's errors, timeouts: whatever the target raises
        print(f"queue depth unavailable: {type(exc).__name__}: {exc}")
        return None


async def _time_to_drain(target: Target, limit: float) -> float | None:
    """Seconds from now until the order queue and the DLQ are both empty; None if never."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if await _depths(target) == (0, 0):
            return round(time.monotonic() - start, 1)
        await asyncio.sleep(0.5)
    return None


async def _get(url: str, seconds: float = 3) -> httpx.Response | None:
    try:
        async with httpx.AsyncClient(timeout=seconds) as client:
            return await client.get(url)
    except httpx.HTTPError:
        return None


async def _steady(target: Target) -> bool:
    checks = await asyncio.gather(*(_get(url) for url in target.health_urls))
    return all(r is not None and r.status_code == 200 for r in checks)


async def _healthy_within(target: Target, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await _steady(target):
            return True
        await asyncio.sleep(1)
    return False


async def _order_statuses(target: Target, order_ids: list[str]) -> tuple[dict[str, str], str]:
    """Each accepted order's final status, through the public API; from the database
    directly when the API does not answer (the fragile settings after a failover)."""
    semaphore = asyncio.Semaphore(20)
    api_failed = False

    async with httpx.AsyncClient(base_url=target.entry_url, timeout=5) as client:
        async def one(order_id: str) -> tuple[str, str]:
            nonlocal api_failed
            async with semaphore:
                try:
                    response = await client.get(f"/orders/{order_id}")
                except httpx.HTTPError:
                    api_failed = True
                    return order_id, "unknown"
            if response.status_code == 404:
                return order_id, "missing"
            if response.status_code != 200:
                api_failed = True
                return order_id, "unknown"
            return order_id, str(response.json()["status"])

        statuses = dict(await asyncio.gather(*(one(i) for i in order_ids)))
    if not api_failed:
        return statuses, "api"
    found = await target.statuses_in_db(order_ids)
    if found is None:
        return statuses, "api (some orders did not answer)"
    return {i: found.get(i, "missing") for i in order_ids}, "database (the API did not answer)"


async def _stock(target: Target, product_id: int) -> int | None:
    """From the writer where it is reachable; otherwise the API's answer from the database."""
    in_db = await target.stock_in_db(product_id)
    if in_db is not None:
        return in_db
    response = await _get(f"{target.entry_url}/products/{product_id}")
    if response is not None and response.status_code == 200 \
            and response.json().get("source") == "database":
        return int(response.json()["stock"])
    return None
