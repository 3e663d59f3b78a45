"""The surge, as the experiment runner offers it: ``loadtest.surge`` in a process of its own
(its client has the CPU of a process to itself, the customers' traffic keeps its own) against
the target's entry, and what it measured: capacity, goodput, the admitted and shed answers'
latency, the longest wait, and how soon the customers' latency settles after it."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import httpx

from chaos_lab.model import SurgeFigures, SurgeOptions
from chaos_lab.processes import LabError
from chaos_lab.stats import percentile
from chaos_lab.targets.base import Say, Target
from loadtest.surge import SurgeReport
from loadtest.traffic import Outcome, TrafficResults

SETTLE_WINDOW = 2.0  # seconds: the customers' p99 over this long, after the surge
SETTLE_SLACK_MS = 50.0  # what "back to its pre-surge value" allows: max(2x, this much more)


async def offer_surge(entry_url: str, options: SurgeOptions, say: Say) -> SurgeReport:
    """Run the probe and the surge; its STATUS lines go to ``say``."""
    with tempfile.TemporaryDirectory(prefix="chaos-surge-") as folder:
        out = Path(folder) / "surge.json"
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loadtest.surge", entry_url, "--factor", f"{options.factor:g}",
            "--seconds", f"{options.seconds:g}", "--probe", f"{options.probe:g}",
            "--resend", options.resend, "--out", str(out),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        assert process.stdout is not None
        try:
            async for line in process.stdout:
                say(line.decode().rstrip())
            status = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        if status != 0 or not out.exists():
            raise LabError(f"the surge generator failed (exit {status})")
        # tens of thousands of tries: parsed off the loop the customers' traffic runs on
        return await asyncio.to_thread(SurgeReport.load, out)


def as_outcomes(report: SurgeReport, traffic_started: float) -> list[Outcome]:
    """The surge's tries as the traffic's outcomes (seconds since the customers' traffic
    started; order ids from each try's client, key and body), for the answer audit."""
    from shop.clients import client_of
    from shop.orders import OrderRequest

    outcomes = []
    for t in report.tries:
        scope = client_of(report.credential(t.request), None)
        order = OrderRequest.new(t.product, 1, report.key(t.request), scope)
        outcomes.append(Outcome(round(t.at - traffic_started, 3), "write", t.status,
                                order_id=str(order.order_id), latency_ms=t.latency_ms,
                                request=-1 - t.request, attempt=t.attempt))
    return outcomes


def figures(report: SurgeReport, customers: TrafficResults,
            traffic_started: float) -> SurgeFigures:
    """What the surge measured: every figure from the surge's tries and the customers'."""
    start, end = report.started - traffic_started, report.ended - traffic_started
    surge = as_outcomes(report, traffic_started)
    during = [o for o in [*surge, *customers.outcomes] if start <= o.at <= end]
    decided = [o for o in surge if start <= o.at <= end and o.status in (201, 409)]
    admitted = [o.latency_ms for o in during if o.status != 503]
    shed = [o.latency_ms for o in during if o.status == 503]
    after_start = [o.latency_ms for o in [*surge, *customers.outcomes] if o.at >= start]
    return SurgeFigures(
        capacity=report.capacity, offered=report.offered,
        goodput=round(len(decided) / max(end - start, 1e-6), 1),
        admitted_p99_ms=percentile(admitted, 99) if admitted else None,
        shed_p99_ms=percentile(shed, 99) if shed else None,
        wait_ms=max(after_start) if after_start else None,
        settle_seconds=settle(customers, start - report_probe(report, traffic_started), end))


def report_probe(report: SurgeReport, traffic_started: float) -> float:
    """How long the probe before the surge lasted (its tries are phase "probe")."""
    probe = [t.at for t in report.tries if t.phase == "probe"]
    return (report.started - min(probe)) if probe else 0.0


def settle(customers: TrafficResults, before: float, end: float) -> float | None:
    """Seconds from the surge's end until the customers' p99 is back: past the last slow
    answer of the last ``SETTLE_WINDOW`` whose p99 was over the pre-surge p99 (before
    ``before``: the probe and the surge left out) doubled, or that plus ``SETTLE_SLACK_MS``.
    None: it never settled before the traffic ended."""
    pre = [o.latency_ms for o in customers.outcomes if o.at < before]
    after = sorted((o for o in customers.outcomes if o.at >= end), key=lambda o: o.at)
    if not pre or not after:
        return None
    bound = max(2 * percentile(pre, 99), percentile(pre, 99) + SETTLE_SLACK_MS)
    last = after[-1].at
    settled_at = end
    t = end
    while t < last:
        window = [o for o in after if t <= o.at < t + SETTLE_WINDOW]
        if window and percentile([o.latency_ms for o in window], 99) > bound:
            # back once the last slow answer of a window that was still over is past
            settled_at = max(o.at for o in window if o.latency_ms > bound)
        t += SETTLE_WINDOW / 4
    if settled_at >= last:
        return None
    return round(settled_at - end, 1)


async def drain_ceiling(target: Target, say: Say, orders: int = 500) -> float | None:
    """The worker's own drain rate, quiet, on this target's queue emulator and database: the
    database out, ``orders`` orders accepted into the order table through the entry, then the
    database back and nothing else going on: orders decided per second until none is left.
    The target is reset afterwards. None when no order was accepted or it never drained."""
    from chaos_lab.experiment import wait_for_drain
    from chaos_lab.model import Fault

    await target.inject(Fault.DB_OUTAGE, 0, say)
    try:
        async with httpx.AsyncClient(base_url=target.entry_url, timeout=5) as http:
            gate = asyncio.Semaphore(20)

            async def one(i: int) -> int:
                async with gate:
                    answer = await http.post("/orders", json={"product_id": 1 + i % 10,
                                                              "quantity": 1})
                    return answer.status_code

            codes = await asyncio.gather(*(one(i) for i in range(orders)))
    finally:
        await target.restore(Fault.DB_OUTAGE, say)
    accepted = codes.count(202)
    drained = await wait_for_drain(target, 300)
    await target.reset()
    if not accepted or not drained:
        return None
    say(f"drain ceiling: {accepted} orders accepted while the database was out, decided in "
        f"{drained:g} s once it was back, quiet: {accepted / drained:.0f} orders/s")
    return round(accepted / drained, 1)
