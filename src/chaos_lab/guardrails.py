"""Guardrails (an experiment file's ``abort:`` block, ``chaos_lab.model.Abort``), checked by the
runner once a second against the traffic's tries as they end: the requests that failed and
the latency of the last seconds. What only the drain can tell (lost orders, false answers)
is the hypothesis', judged at the end."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from chaos_lab.model import Abort, Check
from chaos_lab.stats import observed, percentile
from loadtest.traffic import Outcome


@dataclass(frozen=True)
class Breach:
    reason: str
    check: Check  # the guardrail as a failed check: what it measured, its limit


def breached(abort: Abort, outcomes: Iterable[Outcome], now: float) -> Breach | None:
    """The first guardrail breached at ``now`` (seconds since the traffic started), if any."""
    tries = list(outcomes)
    rule = abort.max_failed_requests_in_window
    if rule is not None:
        since = now - rule.seconds
        failed = sum(1 for o in tries if o.final and o.failed and observed(o) > since)
        if failed > rule.requests:
            return Breach(
                f"guardrail max_failed_requests_in_window: {failed} requests failed in the "
                f"last {rule.seconds:g} s (at most {rule.requests})",
                Check("guardrail_failed_requests_in_window", "<=", rule.requests, failed,
                      False))
    latency = abort.max_p99_ms_in_window
    if latency is not None:
        since = now - latency.seconds
        window = [o.latency_ms for o in tries if observed(o) > since]
        if window and (p99 := percentile(window, 99)) > latency.ms:
            return Breach(
                f"guardrail max_p99_ms_in_window: p99 {p99:g} ms over the last "
                f"{latency.seconds:g} s ({len(window)} tries; at most {latency.ms:g} ms)",
                Check("guardrail_p99_in_window", "<=", latency.ms, p99, False, " ms"))
    return None
