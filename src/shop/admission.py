"""How much work a process takes on at once: a limit that follows the latency it measures.

Past capacity, a process that takes every request makes every request slow (they queue for
its database connections and its event loop) and then fails them all at their deadline: its
goodput collapses (the Amazon Builders' Library, "Using load shedding to avoid overload").
So each process admits at most ``limit`` requests at once and answers the rest 503 at once,
with ``Retry-After``, before any work is spent on them; and ``limit`` is not a guess made
once (``SHOP_MAX_CONCURRENT_REQUESTS`` is only its ceiling): it follows the latency of what
the admitted requests wait for, the database (each call, the wait for a pooled connection
included: ``Endpoint.latency_observer``), additive increase and multiplicative decrease, as
Netflix's concurrency-limits does with its AIMD limit, whose drop signal is a call slower
than a target. Not the whole request's latency: under a flood, answering the shed requests
slows the event loop too, and cutting the limit cannot cure that (it would only shed more);
what shedding costs is kept small instead (a pre-made answer, and the entry's own ceiling).

* every window (a tenth of a second) the calls that ended are averaged;
* slower than ``target`` (``SHOP_ADMISSION_TARGET_MS``): requests are queueing inside the
  process; the limit is cut by a tenth;
* as fast, and the limit in use (at least half of it in flight during the window): it grows
  by its square root; a limit nobody uses says nothing about more, and does not grow.

Throughput is concurrency over latency: the limit settles where the latency sits at the
target, which is where the process is at its capacity, not past it; the excess is shed. It
does not learn a "normal" latency that an overload could drag up with it: once the overload
is gone the latency falls below the target and the limit grows back within seconds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from shop.metrics import ADMISSION_LIMIT

WINDOW_SECONDS = 0.1
BACKOFF = 0.9


@dataclass
class AdaptiveLimit:
    target: float = 0.05  # seconds: the admitted requests' average latency it holds
    min_limit: int = 8
    max_limit: int = 512
    limit: float = 32.0
    name: str = "http"
    _window_started: float | None = None
    _window_total: float = 0.0
    _window_count: int = 0
    _window_peak: int = 0  # most requests in flight during the window

    def __post_init__(self) -> None:
        self.limit = min(max(self.limit, self.min_limit), self.max_limit)
        ADMISSION_LIMIT.labels(limit=self.name).set(self.limit)

    def admits(self, in_flight: int) -> bool:
        """May one more request start, ``in_flight`` being already admitted?"""
        self._window_peak = max(self._window_peak, in_flight + 1)
        return in_flight < int(self.limit)

    def observe(self, latency: float, now: float | None = None) -> None:
        """A database call of an admitted request took ``latency`` seconds."""
        self._window_total += latency
        self._window_count += 1
        now = time.monotonic() if now is None else now
        if self._window_started is None:
            self._window_started = now
        elif now - self._window_started >= WINDOW_SECONDS:
            self._update(self._window_total / self._window_count)
            self._window_started = now
            self._window_total, self._window_count, self._window_peak = 0.0, 0, 0

    def _update(self, latency: float) -> None:
        if latency > self.target:
            self.limit = max(self.min_limit, self.limit * BACKOFF)
        elif self._window_peak >= self.limit / 2:
            self.limit = min(self.max_limit, self.limit + math.sqrt(self.limit))
        ADMISSION_LIMIT.labels(limit=self.name).set(self.limit)
