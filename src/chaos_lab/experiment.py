"""The experiment runner, in the spirit of chaostoolkit: the experiment is data (a file of the
catalog, see ``chaos_lab.model``); a run applies the settings, checks the steady state before
(and injects nothing when it is not met), starts the traffic, injects the fault on time,
restores it (the rollback always runs), waits for the queue to drain, checks the invariants
through the public API, and judges every tolerance of the hypothesis: the verdict.

Every run ends with a status (``STATUSES``): completed (the verdict says whether its hypothesis
held), aborted (the steady state before was not met, or a guardrail of the file's ``abort:``
block was breached), halted (``chaos-shop halt``), interrupted (Ctrl-C) or failed (an error,
e.g. an inject that raised). Whatever the end, the fault is restored before the run returns or
raises, and the run is in its journal (``chaos_lab.journal``) with what it measured so far."""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import httpx

from chaos_lab import guardrails, surge
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
from chaos_lab.processes import LabError
from chaos_lab.stats import latency, percentile_between, recovery_seconds, timeline
from chaos_lab.surge import offer_surge
from chaos_lab.targets.base import DescribesFault, Say, StopsAtOnce, Target
from loadtest.traffic import Outcome, TrafficResults, generate

if TYPE_CHECKING:
    from chaos_lab.journal import Journal

FAULT_TAIL = 5.0  # seconds after the fault ends still counted as "during the fault"


def experiment(name: str, preset: str = "default", scale: float = 1.0) -> Experiment:
    """A catalog experiment by name (chaos_lab/experiments/<name>.yaml) or a file of one's
    own."""
    path = find(name)
    return load(path).resolve(preset, scale, source=path)


# One run ----------------------------------------------------------------------------------


# How a run ended (chaostoolkit's journal statuses, and halted for `chaos-shop halt`).
RUNNING, COMPLETED, FAILED, ABORTED, HALTED, INTERRUPTED = (
    "running", "completed", "failed", "aborted", "halted", "interrupted")
STATUSES = (RUNNING, COMPLETED, FAILED, ABORTED, HALTED, INTERRUPTED)


@dataclass
class RunResult:
    experiment: str
    label: str  # BEFORE (the fragile settings) or AFTER (the resilient settings)
    switches: dict[str, bool]  # the settings' switches: proxy, degradation
    fault: str
    fault_at: float
    hold: float
    preset: str = "default"
    gating: bool = True  # its verdict decides the exit code (not BEFORE in a comparison)
    status: str = COMPLETED  # one of STATUSES (the runner's start RUNNING)
    reason: str | None = None  # why it ended other than completed (the error when failed)
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
    def settings(self) -> str:
        """fragile (BEFORE) or resilient (AFTER): the settings the run was made with."""
        return "fragile" if self.label == "BEFORE" else "resilient"

    @property
    def aborted(self) -> str | None:
        """Why the run was aborted (the steady state before, a guardrail); None if it was not."""
        return self.reason if self.status == ABORTED else None

    @property
    def passed(self) -> bool:
        return self.status == COMPLETED and bool(self.checks) and all(c.passed
                                                                       for c in self.checks)

    def end(self, status: str, reason: str | None = None) -> None:
        assert status in STATUSES, status
        self.status, self.reason = status, reason

    @property
    def failed_requests(self) -> int:
        return self.failed

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        for series in ("timeline", "latency", "breakers"):
            data.pop(series)
        data["settings"] = self.settings
        data["verdict"] = "pass" if self.passed else "fail"
        if self.surge is not None:
            data["surge"]["goodput_ratio"] = self.surge.goodput_ratio
        return data


def verdict(runs: list[RunResult]) -> bool:
    """The runs that gate (AFTER; a lone fragile run) all hold their hypothesis; no run
    failed, was halted or interrupted, or found the shop unsteady before. A BEFORE stopped by
    its guardrail does not gate: the fragile settings hurting is the point."""
    for run in runs:
        if run.status in (RUNNING, FAILED, HALTED, INTERRUPTED):
            return False
        if run.status == ABORTED and not run.steady_before:
            return False
    return bool(runs) and all(r.passed for r in runs if r.gating)


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


@dataclass(frozen=True)
class Stop:
    """Why a run stops before its end: a guardrail breached (aborted), a halt (halted)."""

    status: str  # ABORTED or HALTED
    reason: str
    check: Check | None = None  # the guardrail, what it measured and its limit


@runtime_checkable
class Stops(Protocol):
    """What the runner asks once a second, besides the guardrails: should it stop?"""

    def stop_requested(self) -> Stop | None: ...

    def fault_on(self, spec: Experiment, switches: Switches) -> None:
        """The fault is being injected (persisted, for a halt from elsewhere)."""

    def fault_details(self, details: dict[str, str]) -> None:
        """What the target says identifies the fault once injected (AWS: FIS's id)."""

    def fault_off(self) -> None:
        """The fault is restored."""


@dataclass
class _Live:
    """What a run has so far, shared between its steps and its watchers."""

    started: float = 0.0  # time.monotonic() when the traffic started
    results: TrafficResults | None = None  # the traffic's tries as they end
    watch: BreakerWatch | None = None
    injected_at: float | None = None  # seconds since the traffic started
    fault_end: float | None = None
    traffic_over: bool = False  # the guardrails watch the traffic while it runs
    stopping: bool = False  # a halt or a guardrail: the fault is to be ended at once
    injecting: asyncio.Task[None] | None = None
    restoring: asyncio.Task[None] | None = None


async def run(target: Target, spec: Experiment, switches: Switches, label: str,
              say: Say = print, gating: bool = True, journal: Journal | None = None,
              stops: Stops | None = None) -> RunResult:
    """One run: BEFORE (``switches`` are the fragile settings') or AFTER. It is added to
    ``journal`` (saved at its start and its end) as soon as it begins. A halt (``stops``) or
    a guardrail ends it early (halted, aborted), the fault restored at once; an error or
    Ctrl-C (cancellation) too, and the exception goes on after the restore."""
    result = RunResult(experiment=spec.name, label=label, switches=switches.model_dump(),
                       fault=spec.fault.value, fault_at=spec.fault_at, hold=spec.hold,
                       preset=spec.preset, gating=gating, target=target.name, status=RUNNING)
    live = _Live()
    if journal is not None:
        journal.add(result)
    body = asyncio.create_task(_run(target, spec, switches, result, live, say, stops))
    watcher = asyncio.create_task(_stop_when(spec, live, stops))
    try:
        await asyncio.wait({body, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # Ctrl-C (asyncio.run cancels the main task)
        watcher.cancel()
        say(f"[{label}] interrupted: restoring the fault (Ctrl-C again leaves it in place; "
            f"`chaos-shop halt` restores it then)")
        failed = await _wind_down(body, say)
        _measure_so_far(result, live)
        result.end(INTERRUPTED, "by Ctrl-C; " + (f"the restore failed: {failed}" if failed
                                                   else "the fault was restored"))
        _save(journal)
        raise
    if body.done():
        watcher.cancel()
        try:
            body.result()
        except Exception as exc:
            _measure_so_far(result, live)
            result.end(FAILED, _describe(exc))
            _save(journal)
            raise
        _save(journal)
        return result
    live.stopping = True
    try:
        stop = watcher.result()
    except Exception as exc:  # the watch itself failed (the run's state unreadable)
        await _wind_down(body, say)
        _measure_so_far(result, live)
        result.end(FAILED, f"watching for a halt or a guardrail: {_describe(exc)}")
        _save(journal)
        raise
    say(f"[{label}] {stop.status.upper()}: {stop.reason}; restoring the fault now")
    failed = await _wind_down(body, say)
    _measure_so_far(result, live)
    result.end(stop.status, stop.reason + (f"; the restore failed: {failed}" if failed else ""))
    result.checks = [stop.check] if stop.check is not None else []
    _save(journal)
    return result


def _save(journal: Journal | None) -> None:
    if journal is not None:
        journal.save()


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, LabError) else f"{type(exc).__name__}: {exc}"


async def _wind_down(body: asyncio.Task[None], say: Say) -> str | None:
    """Cancel the run's steps and wait for them to end: their ``finally`` restores the fault
    (waiting first for an inject in progress to return). What went wrong, if anything."""
    body.cancel()
    try:
        await body
    except asyncio.CancelledError:
        pass
    except Exception as exc:  # the restore itself failed: say so, the status says the rest
        say(f"the restore failed: {_describe(exc)}; `chaos-shop halt` tries again")
        return _describe(exc)
    return None


async def _stop_when(spec: Experiment, live: _Live, stops: Stops | None) -> Stop:
    """Once a second: a halt asked for, or a guardrail breached while the traffic runs."""
    while True:
        await asyncio.sleep(1)
        if stops is not None and (stop := stops.stop_requested()) is not None:
            return stop
        if live.results is not None and not live.traffic_over:
            breach = guardrails.breached(spec.abort, live.results.outcomes,
                                         time.monotonic() - live.started)
            if breach is not None:
                return Stop(ABORTED, breach.reason, breach.check)


async def _run(target: Target, spec: Experiment, switches: Switches, result: RunResult,
               live: _Live, say: Say, stops: Stops | None) -> None:
    """The run's steps, start to verdict; the fault always restored on the way out."""
    label = result.label
    say(f"[{label}] {spec.name}: restarting the services ({result.settings} settings: "
        f"{switches})")
    await target.apply(switches, say)
    await target.reset()
    profile = spec.traffic
    result.stock_start = await _stock(target, profile.product_id)
    unsteady = await _unsteady(target)
    if unsteady:
        result.end(ABORTED, f"steady state before not met ({'; '.join(unsteady)}): the fault "
                            f"was not injected")
        result.checks = [Check("steady_state_before", "is", True, False, False)]
        say(f"[{label}] {result.aborted}")
        return
    result.steady_before = True
    if spec.fault is Fault.RECOVERY_STORM and switches.degradation:
        say(f"[{label}] the worker's drain ceiling, quiet, before the storm")
        result.drain_ceiling = await surge.drain_ceiling(target, say)
    say(f"[{label}] steady state before: ok; traffic {profile.reads_per_second:g} reads/s + "
        f"{profile.writes_per_second:g} writes/s for {profile.duration:g}s, {spec.fault} at "
        f"t={spec.fault_at:g}s" + (f" held {spec.hold:g}s" if spec.hold else ""))
    results = TrafficResults()
    live.started, started_epoch = time.monotonic(), time.time()
    live.results = results
    started = live.started
    traffic = asyncio.create_task(generate(target.entry_url, profile, on_status=say,
                                           results=results))
    live.watch = watch = BreakerWatch(target.breaker_urls, started)
    watching = asyncio.create_task(watch.run())
    drain: asyncio.Task[float | None] | None = None
    report = None
    try:
        await asyncio.sleep(max(0.0, spec.fault_at - (time.monotonic() - started)))
        say(f"[{label}] >>> inject {spec.fault}")
        live.injected_at = time.monotonic() - started
        if stops is not None:
            stops.fault_on(spec, switches)
        if isinstance(target, TakesFaultOptions):
            target.fault_options(spec.fault, spec.options)
        live.injecting = asyncio.create_task(target.inject(spec.fault, spec.hold, say))
        await asyncio.shield(live.injecting)  # a stop waits for it, then restores
        if stops is not None and isinstance(target, DescribesFault):
            stops.fault_details(target.fault_details(spec.fault))
        if spec.fault is Fault.SURGE:  # the fault is the traffic itself
            report = await offer_surge(target.entry_url, _surge_options(spec), say)
        if spec.hold:
            await asyncio.sleep(max(0.0, started + live.injected_at + spec.hold
                                    - time.monotonic()))
            await _restore(target, spec, live, say, label, stops)
            if switches.degradation:
                drain = asyncio.create_task(wait_for_drain(target, spec.drain_timeout))
            if spec.fault is Fault.RECOVERY_STORM:  # the backlog drains while a surge hits
                report = await offer_surge(target.entry_url, _surge_options(spec), say)
        live.fault_end = time.monotonic() - started
        await traffic
        live.traffic_over = True
        drained = await drain if drain else None
    finally:
        for task in (traffic, drain, watching):
            if task is not None and not task.done():
                task.cancel()
        await _restore(target, spec, live, say, label, stops, rollback=True)
    say(results.results_block())
    result.fault_window = (round(live.injected_at, 1), round(live.fault_end + FAULT_TAIL, 1))
    result.breakers = watch.changes
    audited = []
    if report is not None:  # the surge's answers are audited with the customers'
        result.surge = surge.figures(report, results, started_epoch)
        audited = surge.as_outcomes(report, started_epoch)
    await verify(target, spec, switches, result, results, drained, say, audited)
    result.end(COMPLETED)


async def _restore(target: Target, spec: Experiment, live: _Live, say: Say, label: str,
                   stops: Stops | None, rollback: bool = False) -> None:
    """Restore the fault once (the rollback, a stop and the hold's end share one restore);
    nothing when it was never injected. An inject still in progress (a thread) is waited
    for first: restoring under it would race it."""
    if live.injecting is None:
        return
    if live.restoring is None:
        if not live.injecting.done():
            say(f"[{label}] the inject is still in progress: restoring once it returns")
            with suppress(Exception):
                await asyncio.shield(live.injecting)
        say(f"[{label}] {'rollback: ' if rollback else ''}<<< restore {spec.fault}")

        async def restore() -> None:
            if live.stopping and isinstance(target, StopsAtOnce):  # FIS: StopExperiment
                await target.stop(spec.fault, say)
            await target.restore(spec.fault, say)
            if stops is not None:
                stops.fault_off()

        live.restoring = asyncio.create_task(restore())
    await asyncio.shield(live.restoring)


def _measure_so_far(result: RunResult, live: _Live) -> None:
    """What the traffic showed until the run stopped (aborted, halted, failed,
    interrupted): the counts, the timelines, the latency while the fault was on. The
    invariants after are not checked: the run did not get there."""
    if live.results is None:
        return
    now = time.monotonic() - live.started
    if live.injected_at is not None:
        result.fault_window = (round(live.injected_at, 1),
                               round((live.fault_end or now) + FAULT_TAIL, 1))
    if live.watch is not None:
        result.breakers = live.watch.changes
    traffic_figures(result, live.results)


def traffic_figures(result: RunResult, results: TrafficResults) -> None:
    """Counts, failures, retries, timelines and the latency during the fault."""
    result.counts = results.counts
    result.failed = results.failed_requests()
    result.retries = results.retries
    result.recovery_seconds = recovery_seconds(results, result.fault_at)
    result.timeline = timeline(results)
    result.latency = latency(results)
    if result.fault_window is not None:
        result.p50_during_fault_ms = percentile_between(results, 50, *result.fault_window)
        result.p99_during_fault_ms = percentile_between(results, 99, *result.fault_window)


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
    result.confirmed_quantity = result.decided["confirmed"] * spec.traffic.quantity
    result.stock_end = await _stock(target, spec.traffic.product_id)
    db_confirmed = await target.confirmed_in_db(spec.traffic.product_id)
    # Where the database is out of reach (AWS), the API's confirmed orders are all we know.
    confirmed = result.decided["confirmed"] if db_confirmed is None else db_confirmed
    result.stock_consistent = (
        None if result.stock_end is None or result.stock_start is None
        else result.stock_start - result.stock_end == confirmed * spec.traffic.quantity)
    result.unacknowledged_confirmed = max(0, confirmed - result.decided["confirmed"])
    result.queue, result.dlq = await _depths(target) or (-1, -1)  # -1: no answer
    traffic_figures(result, results)
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


async def compare(target: Target, spec: Experiment, say: Say = print,
                  journal: Journal | None = None, stops: Stops | None = None) -> list[RunResult]:
    """BEFORE (the fragile settings; failing is the point, it does not gate) then AFTER (the
    resilient settings), unless BEFORE was halted."""
    before = await run(target, spec, spec.fragile, "BEFORE", say, gating=False,
                       journal=journal, stops=stops)
    if before.status == HALTED:
        return [before]
    after = await run(target, spec, RESILIENT_SWITCHES, "AFTER", say, journal=journal,
                      stops=stops)
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
