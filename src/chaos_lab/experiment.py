"""The experiment runner, in the spirit of chaostoolkit: the experiment is data (a file under
``experiments/``, see ``chaos_lab.model``); a run applies the switches, checks the steady state
before (and injects nothing when it is not met), starts the traffic, injects the fault on time,
restores it (the rollback always runs), waits for the queue to drain, checks the invariants
through the public API, and judges every tolerance of the hypothesis: the verdict."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from chaos_lab import surge
from chaos_lab.audit import audit as audit_answers
from chaos_lab.model import (
    RESILIENT_SWITCHES,
    Check,
    Experiment,
    Fault,
    Measured,
    SurgeFigures,
    SurgeOptions,
    Switches,
    TakesFaultOptions,
    find,
    judge,
    load,
)
from chaos_lab.stats import percentile
from chaos_lab.surge import offer_surge
from chaos_lab.targets.base import Say, Target
from loadtest.traffic import Outcome, TrafficResults, generate

# Kept for the bench (src/chaos_lab/bench), which restarts the lab with these settings.
NO_DEGRADATION = Switches(proxy=True, degradation=False).env()

FAULT_TAIL = 5.0  # seconds after the fault ends still counted as "during the fault"


def experiment(name: str, preset: str = "default", scale: float = 1.0) -> Experiment:
    """A catalog experiment by name (experiments/<name>.yaml) or a file of one's own."""
    path = find(name)
    return load(path).resolve(preset, scale, source=path)


# One run ----------------------------------------------------------------------------------


@dataclass
class RunResult:
    experiment: str
    label: str  # BEFORE or AFTER
    settings: dict[str, bool]  # the switches
    fault: str
    fault_at: float
    hold: float
    preset: str = "default"
    gating: bool = True  # its verdict decides the exit code (not BEFORE in a comparison)
    aborted: str | None = None  # why the fault was not injected (steady state not met)
    counts: dict[str, int] = field(default_factory=dict)  # every try, by outcome
    failed: int = 0  # requests whose last try failed
    retries: int = 0
    answers: dict[str, int] = field(default_factory=dict)  # the audit: every try by class
    false_answers: int | None = None  # None: the audit could not be made
    false_examples: list[dict[str, Any]] = field(default_factory=list)
    accepted: int = 0
    decided: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    stock_start: int | None = None
    stock_end: int | None = None
    confirmed_quantity: int = 0
    stock_consistent: bool | None = None
    unacknowledged_confirmed: int = 0
    dlq: int = -1
    queue: int = -1
    steady_before: bool = False
    healthy_after: bool = False
    recovery_seconds: float | None = None  # fault to last failure; None: never recovered
    fault_window: tuple[float, float] | None = None  # seconds since the traffic started
    p50_during_fault_ms: float | None = None
    p99_during_fault_ms: float | None = None
    checks: list[Check] = field(default_factory=list)
    timeline: list[dict[str, int]] = field(default_factory=list)
    latency: list[dict[str, float]] = field(default_factory=list)  # per second: p50, p99
    breakers: list[dict[str, Any]] = field(default_factory=list)  # t, service, state
    checked_in: str = "api"
    target: str = "local"
    drained_seconds: float | None = None  # restore (or the traffic's end) to an empty queue
    surge: SurgeFigures | None = None  # what a surge measured (surge, recovery-storm)
    drain_rate: float | None = None  # orders accepted while out, decided per second after
    drain_ceiling: float | None = None  # the worker's, quiet, measured before (recovery-storm)

    @property
    def passed(self) -> bool:
        return self.aborted is None and bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failed_requests(self) -> int:
        return self.failed

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        for series in ("timeline", "latency", "breakers"):
            data.pop(series)
        data["verdict"] = "pass" if self.passed else "fail"
        if self.surge is not None:
            data["surge"]["goodput_ratio"] = self.surge.goodput_ratio
        return data


def verdict(runs: list[RunResult]) -> bool:
    """The runs that gate (AFTER; a lone fragile run) all hold their hypothesis, and no run
    was aborted for want of a steady state."""
    return all(r.aborted is None for r in runs) and all(r.passed for r in runs if r.gating)


class BreakerWatch:
    """Each service's breaker, read from its /health/deep ``breaker`` field once a second;
    a change of state is recorded with its time since the traffic started."""

    def __init__(self, urls: dict[str, str], started: float) -> None:
        self.urls, self.started = urls, started
        self.changes: list[dict[str, Any]] = []
        self._last: dict[str, str] = {}

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=1.0) as client:
            while self.urls:
                polled = time.monotonic()
                states = await asyncio.gather(*(self._one(client, url)
                                                for url in self.urls.values()))
                for service, state in zip(self.urls, states, strict=True):
                    if state is not None and state != self._last.get(service):
                        self._last[service] = state
                        self.changes.append({"t": round(polled - self.started, 1),
                                             "service": service, "state": state})
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - polled)))

    @staticmethod
    async def _one(client: httpx.AsyncClient, url: str) -> str | None:
        try:
            state = (await client.get(url)).json().get("breaker")
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        return str(state) if state else None


async def run(target: Target, spec: Experiment, switches: Switches, label: str,
              say: Say = print, gating: bool = True) -> RunResult:
    say(f"[{label}] {spec.name}: restarting the services ({switches})")
    await target.apply(switches, say)
    await target.reset()
    profile = spec.profile
    stock_start = await _stock(target, profile.product_id)
    result = RunResult(experiment=spec.name, label=label, settings=switches.model_dump(),
                       fault=spec.fault.value, fault_at=spec.fault_at, hold=spec.hold,
                       preset=spec.preset, gating=gating, target=target.name,
                       stock_start=stock_start)
    unsteady = await _unsteady(target)
    if unsteady:
        result.aborted = (f"steady state before not met ({'; '.join(unsteady)}): the fault "
                          f"was not injected")
        result.checks = [Check("steady_state_before", "is", True, False, False)]
        say(f"[{label}] {result.aborted}")
        return result
    result.steady_before = True
    if spec.fault is Fault.RECOVERY_STORM and switches.degradation:
        say(f"[{label}] the worker's drain ceiling, quiet, before the storm")
        result.drain_ceiling = await surge.drain_ceiling(target, say)
    say(f"[{label}] steady state before: ok; traffic {profile.reads_per_second:g} reads/s + "
        f"{profile.writes_per_second:g} writes/s for {profile.duration:g}s, {spec.fault} at "
        f"t={spec.fault_at:g}s" + (f" held {spec.hold:g}s" if spec.hold else ""))
    started, started_epoch = time.monotonic(), time.time()
    traffic = asyncio.create_task(generate(target.entry_url, profile, on_status=say))
    watch = BreakerWatch(target.breaker_urls, started)
    watching = asyncio.create_task(watch.run())
    drain: asyncio.Task[float | None] | None = None
    restored = False
    report = None
    try:
        await asyncio.sleep(max(0.0, spec.fault_at - (time.monotonic() - started)))
        say(f"[{label}] >>> inject {spec.fault}")
        injected_at = time.monotonic() - started
        if isinstance(target, TakesFaultOptions):
            target.fault_options(spec.fault, spec.options)
        await target.inject(spec.fault, spec.hold, say)
        if spec.fault is Fault.SURGE:  # the fault is the traffic itself
            report = await offer_surge(target.entry_url, _surge_options(spec), say)
        if spec.hold:
            await asyncio.sleep(max(0.0, started + injected_at + spec.hold - time.monotonic()))
            say(f"[{label}] <<< restore {spec.fault}")
            restored = True
            await target.restore(spec.fault, say)
            if switches.degradation:
                drain = asyncio.create_task(wait_for_drain(target, spec.drain_timeout))
            if spec.fault is Fault.RECOVERY_STORM:  # the backlog drains while a surge hits
                report = await offer_surge(target.entry_url, _surge_options(spec), say)
        fault_end = time.monotonic() - started
        results = await traffic
        drained = await drain if drain else None
    finally:
        for task in (traffic, drain, watching):
            if task is not None and not task.done():
                task.cancel()
        if not restored:  # the rollback always runs
            say(f"[{label}] rollback: restore {spec.fault}")
            await target.restore(spec.fault, say)
    say(results.results_block())
    result.fault_window = (round(injected_at, 1), round(fault_end + FAULT_TAIL, 1))
    result.breakers = watch.changes
    audited = []
    if report is not None:  # the surge's answers are audited with the customers'
        result.surge = surge.figures(report, results, started_epoch)
        audited = surge.as_outcomes(report, started_epoch)
    await verify(target, spec, switches, result, results, drained, say, audited)
    return result


def _surge_options(spec: Experiment) -> SurgeOptions:
    assert isinstance(spec.options, SurgeOptions), spec.options
    return spec.options


async def verify(target: Target, spec: Experiment, switches: Switches, result: RunResult,
                 results: TrafficResults, drained: float | None, say: Say,
                 more_writes: list[Outcome] | None = None) -> None:
    """The steady state after, the invariants through the public API where it answers, and
    every tolerance judged. ``more_writes``: tries of orders of other traffic (a surge's):
    audited with the customers', not counted as theirs."""
    label = result.label
    if switches.degradation and drained is None:
        say(f"[{label}] waiting for the order queue to drain")
        drained = await wait_for_drain(target, spec.drain_timeout)
    result.drained_seconds = drained
    backlog = results.count("write_queued")
    if drained and backlog:
        result.drain_rate = round(backlog / drained, 1)
    result.healthy_after = await _healthy_within(target, 30)
    writes = [*results.writes(), *(more_writes or [])]
    order_ids = sorted({w.order_id for w in writes if w.order_id})
    final, result.checked_in = await _final_states(target, order_ids)
    accepted = results.accepted_orders()
    if final is not None:
        audited = audit_answers(writes, final)
        result.answers, result.false_answers = audited.answers, audited.false_answers
        result.false_examples = [vars(f) for f in audited.false[:20]]
        result.lost = audited.lost
        states = [final.get(o.order_id or "", "missing") for o in accepted]
    else:
        states = ["unknown"] * len(accepted)
        result.lost = len(accepted)
    result.decided = {s: states.count(s)
                      for s in ("confirmed", "rejected", "failed", "pending", "missing")}
    result.accepted = len(accepted)
    result.counts = results.counts
    result.failed = results.failed_requests()
    result.retries = results.retries
    result.confirmed_quantity = result.decided["confirmed"] * spec.quantity
    result.stock_end = await _stock(target, spec.product_id)
    db_confirmed = await target.confirmed_in_db(spec.product_id)
    # Where the database is out of reach (AWS), the API's confirmed orders are all we know.
    confirmed = result.decided["confirmed"] if db_confirmed is None else db_confirmed
    result.stock_consistent = (
        None if result.stock_end is None or result.stock_start is None
        else result.stock_start - result.stock_end == confirmed * spec.quantity)
    result.unacknowledged_confirmed = max(0, confirmed - result.decided["confirmed"])
    result.queue, result.dlq = await _depths(target) or (-1, -1)  # -1: no answer
    result.recovery_seconds = recovery_seconds(results, spec.fault_at)
    result.timeline = timeline(results)
    result.latency = latency(results)
    if result.fault_window is not None:
        result.p50_during_fault_ms = percentile_between(results, 50, *result.fault_window)
        result.p99_during_fault_ms = percentile_between(results, 99, *result.fault_window)
    result.checks = judge(spec.hypothesis, Measured(
        failed_requests=result.failed_requests, lost_orders=result.lost,
        false_answers=result.false_answers, surge=result.surge,
        p50_latency_ms=result.p50_during_fault_ms, p99_latency_ms=result.p99_during_fault_ms,
        recovery_seconds=result.recovery_seconds, stock_consistent=result.stock_consistent,
        dlq=result.dlq, healthy_after=result.healthy_after))
    failed = [c.title for c in result.checks if not c.passed]
    say(f"[{label}] lost orders: {result.lost} of {len(accepted)} accepted; false answers: "
        f"{'not audited' if result.false_answers is None else result.false_answers} "
        f"(answers {result.answers}); healthy after: "
        f"{result.healthy_after}; DLQ: {result.dlq}; hypothesis "
        + ("holds" if not failed else f"VIOLATED ({', '.join(failed)})"))


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


def latency(results: TrafficResults) -> list[dict[str, float]]:
    """p50 and p99 of the requests started in each second (failures at their timeout)."""
    if not results.outcomes:
        return []
    seconds = int(max(o.at for o in results.outcomes)) + 1
    buckets: list[list[float]] = [[] for _ in range(seconds)]
    for outcome in results.outcomes:
        buckets[int(outcome.at)].append(outcome.latency_ms)
    return [{"p50": percentile(b, 50), "p99": percentile(b, 99)} if b else {} for b in buckets]


def percentile_between(results: TrafficResults, q: float, start: float,
                       end: float) -> float | None:
    """The q-th percentile latency of the requests started in [start, end] (failures at
    their timeout); None when there were none."""
    window = [o.latency_ms for o in results.outcomes if start <= o.at <= end]
    return percentile(window, q) if window else None


async def compare(target: Target, spec: Experiment, say: Say = print) -> list[RunResult]:
    """BEFORE (the fragile switches; failing is the point, it does not gate) then AFTER."""
    before = await run(target, spec, spec.fragile, "BEFORE", say, gating=False)
    after = await run(target, spec, RESILIENT_SWITCHES, "AFTER", say)
    return [before, after]


# Checks -----------------------------------------------------------------------------------


async def _depths(target: Target) -> tuple[int, int] | None:
    """Queue and DLQ depths; None while the queue service does not answer (moto saturated by
    a drain at 10x traffic): a poll that failed, not a reason to abandon the experiment."""
    try:
        return await target.queue_depths()
    except Exception as exc:  # botocore's errors, timeouts: whatever the target raises
        print(f"queue depth unavailable: {type(exc).__name__}: {exc}")
        return None


async def wait_for_drain(target: Target, limit: float) -> float | None:
    """The one drain wait: seconds from now until the order queue is empty (visible and in
    flight) and no accepted order is undecided in the order table (where it can be read);
    None if that is not so within ``limit``. The DLQ is a tolerance, not waited for."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        depths = await _depths(target)
        if depths is not None and depths[0] == 0 and await _undecided(target) in (0, None):
            return round(time.monotonic() - start, 1)
        await asyncio.sleep(0.5)
    return None


async def _undecided(target: Target) -> int | None:
    try:
        return await target.undecided_orders()
    except Exception as exc:  # the emulator busy: not a reason to stop waiting
        print(f"undecided orders unavailable: {type(exc).__name__}: {exc}")
        return -1


async def _unsteady(target: Target) -> list[str]:
    """What is not in its steady state (empty: all is)."""
    checks = await asyncio.gather(*(_get(url) for url in target.health_urls))
    return [f"{url} answered {'nothing' if r is None else r.status_code}"
            for url, r in zip(target.health_urls, checks, strict=True)
            if r is None or r.status_code != 200]


async def _get(url: str, seconds: float = 3) -> httpx.Response | None:
    try:
        async with httpx.AsyncClient(timeout=seconds) as client:
            return await client.get(url)
    except httpx.HTTPError:
        return None


async def _steady(target: Target) -> bool:
    return not await _unsteady(target)


async def _healthy_within(target: Target, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await _steady(target):
            return True
        await asyncio.sleep(1)
    return False


async def _final_states(target: Target,
                        order_ids: list[str]) -> tuple[dict[str, str] | None, str]:
    """Each order's state in the database (orders without a row left out): read there where
    the target can reach it, else through the public API (which reads the database, or the
    order table for an order accepted while it was out). None when neither can tell."""
    found = await target.statuses_in_db(order_ids)
    if found is not None:
        return found, "database"
    statuses, where = await _order_statuses(target, order_ids)
    if "unknown" in statuses.values():
        return None, where
    return {i: s for i, s in statuses.items() if s != "missing"}, where


async def _order_statuses(target: Target, order_ids: list[str]) -> tuple[dict[str, str], str]:
    """Each order's status through the public API; from the database directly when the API
    does not answer (the fragile settings after a failover)."""
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
