"""The benchmark suite: ``chaos-shop bench`` (see ``runner``)."""

from enum import StrEnum


class BenchPart(StrEnum):
    """The suite's parts, in the order they run (``chaos-shop bench --part``)."""

    catalog = "catalog"
    orders = "orders"
    degraded = "degraded"
    drain = "drain"
    faults = "faults"  # every catalog experiment, short preset: p50/p99 during each fault
    generators = "generators"  # which load generator can offer a surge here, and its cost
    overload = "overload"  # offered load against goodput and p99, before and after (a PNG)
