"""The lab's statistics, one definition each: the runner, the guardrails, the surge and the
bench share them. Percentiles are by nearest rank (a value that was measured, never an
interpolation); per-second timelines bucket the tries by the second they started; recovery is
from the fault to the last failure observed."""

from __future__ import annotations

from loadtest.traffic import Outcome, TrafficResults


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q% of the values at or below it."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil
    return ordered[int(rank) - 1]


def p50_p99(values: list[float]) -> tuple[float, float]:
    return percentile(values, 50), percentile(values, 99)


def recovery_seconds(results: TrafficResults, fault_at: float) -> float | None:
    """From the fault to the last failure (0: nothing failed). None when failures go on to
    the end of the run: the shop did not recover on its own.

    A failure counts when it was observed (its start plus its latency), not when its request
    started: a request sent just before the fault that times out because of it is the fault's.
    Failures observed before the fault are not the fault's (the steady state says so)."""
    failures = [observed(o) for o in results.outcomes
                if o.label.endswith("_fail") and observed(o) >= fault_at]
    if not failures:
        return 0.0
    end = max(observed(o) for o in results.outcomes)
    last = max(failures)
    successes_after = [o for o in results.outcomes
                       if observed(o) > last and not o.label.endswith("_fail")]
    if end - last < 5 and not successes_after:
        return None
    # at least 0.1 s: something failed, and the table must not say "0 s" for it
    return max(0.1, round(last - fault_at, 1))


def observed(outcome: Outcome) -> float:
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
