"""The bench's overload part: offered load against goodput and latency, before and after.

A probe measures the lab's capacity (orders decided per second, closed loop, loadtest.surge),
then orders are offered open loop at fractions and multiples of it, each step from a reset
lab: goodput (201 + 409 per second), the admitted answers' p99 and the shed ones'. "Before"
is the shop as it was: admission by the static ceiling alone and no ceiling at the entry;
"after" is the adaptive limit under the entry's ceiling. One PNG draws both curves.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure

from chaos_lab.local.lab import ENTRY_ORDERS_CEILING, ORDERS_FLEET, Lab
from chaos_lab.stats import percentile
from chaos_lab.targets.base import RESILIENT, Say
from loadtest.surge import Surge

FACTORS = (0.5, 1.0, 2.0, 3.0, 5.0)
STATIC = {**RESILIENT, "SHOP_ADMISSION": "static"}
NO_CEILING = 100_000


@dataclass(frozen=True)
class Point:
    factor: float
    offered: float  # orders/s offered
    goodput: float  # orders/s decided (201, 409)
    admitted_p99_ms: float | None
    shed_p99_ms: float | None
    shed: float  # the share of tries answered 503


@dataclass
class Curve:
    name: str
    capacity: float = 0.0
    points: list[Point] = field(default_factory=list)
    rss_mib: dict[str, float] = field(default_factory=dict)  # each orders process, at the end


async def _step(lab: Lab, rate: float, factor: float, seconds: float) -> Point:
    await lab.reset()
    generator = Surge(lab.entry_url, say=lambda _: None)
    sweeping = asyncio.ensure_future(generator.pool.sweep())
    try:
        await generator.offer(rate, seconds)
    finally:
        sweeping.cancel()
    tries = generator.report.tries
    decided = sum(1 for t in tries if t.status in (201, 409))
    admitted = [t.latency_ms for t in tries if t.status != 503]
    shed = [t.latency_ms for t in tries if t.status == 503]
    return Point(factor, round(generator.report.offered, 1), round(decided / seconds, 1),
                 percentile(admitted, 99) if admitted else None,
                 percentile(shed, 99) if shed else None,
                 round(len(shed) / max(len(tries), 1), 3))


async def curve(lab: Lab, name: str, seconds: float, factors: tuple[float, ...],
                say: Say) -> Curve:
    result = Curve(name)
    await lab.reset()
    probe = Surge(lab.entry_url, say=lambda _: None)
    result.capacity = await probe.probe(5)
    say(f"overload ({name}): capacity {result.capacity:g} orders/s")
    for factor in factors:
        point = await _step(lab, max(result.capacity, 1.0) * factor, factor, seconds)
        say(f"overload ({name}): {factor:g}x offered {point.offered:g}/s goodput "
            f"{point.goodput:g}/s admitted p99 {point.admitted_p99_ms} ms, shed p99 "
            f"{point.shed_p99_ms} ms, shed {point.shed:.0%}")
        result.points.append(point)
    from chaos_lab.bench.runner import rss_mib
    for fleet_name in ORDERS_FLEET:
        for pid in lab.orders_workers(fleet_name):
            result.rss_mib[fleet_name] = rss_mib(pid)
    return result


def measure(lab: Lab, seconds: float = 10, factors: tuple[float, ...] = FACTORS,
            say: Say = print) -> list[Curve]:
    """Before (the static ceiling, no entry ceiling), then after; the lab left as after."""
    curves = []
    for name, settings, ceiling in (("before", STATIC, NO_CEILING),
                                    ("after", dict(RESILIENT), ENTRY_ORDERS_CEILING)):
        lab.set_entry_ceiling(ceiling)
        lab.start_services(settings, log=lambda *_: None)
        curves.append(asyncio.run(curve(lab, name, seconds, factors, say)))
    return curves


def plot(curves: list[Curve], path: Path) -> None:
    """Goodput over offered load (each against its own capacity), and the admitted p99."""
    fig = Figure(figsize=(11, 4.5))
    good, late = fig.subplots(1, 2)
    for c, style in zip(curves, ("--o", "-o"), strict=False):
        offered = [p.offered for p in c.points]
        good.plot(offered, [p.goodput for p in c.points], style, label=f"{c.name} (capacity "
                  f"{c.capacity:g}/s)")
        late.plot(offered, [p.admitted_p99_ms or float("nan") for p in c.points], style,
                  label=c.name)
    ceiling = max((c.capacity for c in curves), default=0)
    good.axhline(ceiling, color="grey", linewidth=0.8)
    good.axhline(0.9 * ceiling, color="grey", linewidth=0.8, linestyle=":",
                 label="90 % of capacity")
    good.set(xlabel="orders offered per second (open loop)",
             ylabel="goodput: orders decided per second", title="goodput past capacity")
    late.set(xlabel="orders offered per second (open loop)", ylabel="admitted answers' p99, ms",
             title="what the admitted wait", yscale="log")
    late.axhline(250, color="grey", linewidth=0.8, linestyle=":", label="goal 250 ms")
    good.legend(fontsize=8)
    late.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def markdown(curves: list[Curve]) -> str:
    lines = ["| settings | capacity/s | offered | offered/s | goodput/s | goodput / capacity "
             "| admitted p99 ms | shed p99 ms | shed |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c in curves:
        for p in c.points:
            ratio = p.goodput / c.capacity if c.capacity else 0
            lines.append(f"| {c.name} | {c.capacity:g} | {p.factor:g}x | {p.offered:g} | "
                         f"{p.goodput:g} | {ratio:.2f} | {_ms(p.admitted_p99_ms)} | "
                         f"{_ms(p.shed_p99_ms)} | {p.shed:.0%} |")
    rss = ", ".join(f"{c.name}: " + " / ".join(f"{v:.0f}" for v in c.rss_mib.values())
                    for c in curves if c.rss_mib)
    if rss:
        lines.append(f"\nRSS of each orders process after the steps, MiB: {rss}.")
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
