"""A circuit breaker per remote dependency, on top of aiobreaker, probed in the background.

aiobreaker 1.2 keeps the state (closed or open), the failure counter and the listeners
(metrics, logs). What it does not do is decided here:

* no customer request is ever a trial. aiobreaker half-opens on the first call after its
  timeout and lets that caller (and every concurrent one) wait on a dependency that may still
  hang. Here, while the breaker is open, every call is refused at once, and ``keep_probing``
  (a background task per breaker) runs a cheap probe every ``probe_seconds`` under
  ``probe_timeout``; the first probe that succeeds closes the breaker;
* outcomes are only counted while closed: a call that was in flight when the breaker opened
  neither reopens nor closes it (the probe decides);
* business answers (``BusinessError``: a 404, a 409) are not reported at all: aiobreaker would
  count an excluded exception as a success and reset the failure count.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from datetime import timedelta
from typing import Any, TypeVar

import aiobreaker
from aiobreaker import CircuitBreakerState

from shop.errors import BusinessError, DatabaseUnavailable
from shop.metrics import BREAKER_PROBES, BREAKER_STATE, BREAKER_TRANSITIONS

log = logging.getLogger(__name__)
T = TypeVar("T")

STATE_VALUES = {"closed": 0, "half-open": 1, "open": 2}


class _Listener(aiobreaker.CircuitBreakerListener):  # type: ignore[misc]
    def state_change(self, breaker: Any, old: Any, new: Any) -> None:
        old_name = _name(old.state) if old is not None else "none"
        new_name = _name(new.state)
        log.warning("breaker %s: %s -> %s", breaker.name, old_name, new_name)
        BREAKER_TRANSITIONS.labels(breaker=breaker.name, state=new_name).inc()
        BREAKER_STATE.labels(breaker=breaker.name).set(STATE_VALUES[new_name])


def _name(state: CircuitBreakerState) -> str:
    return {
        CircuitBreakerState.CLOSED: "closed",
        CircuitBreakerState.OPEN: "open",
        CircuitBreakerState.HALF_OPEN: "half-open",
    }[state]


async def _succeed() -> None:
    return None


async def _fail(exc: BaseException) -> None:
    raise exc


class BreakerOpen(Exception):
    """Refused without trying: the breaker is open (its probe has not succeeded yet)."""


class Breaker:
    def __init__(self, name: str, fail_max: int, probe_seconds: float,
                 probe_timeout: float = 0.5) -> None:
        self.name = name
        self.probe_seconds = probe_seconds
        self.probe_timeout = probe_timeout
        self._cb = aiobreaker.CircuitBreaker(
            fail_max=fail_max,
            # Never half-opened by a call: only a successful probe closes it.
            timeout_duration=timedelta(days=365),
            listeners=[_Listener()],
            name=name,
        )
        self._opened = asyncio.Event()
        BREAKER_STATE.labels(breaker=name).set(0)

    @property
    def state(self) -> str:
        """closed or open."""
        return _name(self._cb.current_state)

    @property
    def closed(self) -> bool:
        return self._cb.current_state is CircuitBreakerState.CLOSED

    @property
    def failing(self) -> bool:
        """Closed, but its last reported outcome was a failure: the dependency is failing for
        others right now, so a caller should not spend a retry budget on it."""
        return self.closed and self._cb.fail_counter > 0

    async def call(self, operation: Callable[[], Awaitable[T]],
                   counts: Callable[[DatabaseUnavailable], bool] | None = None) -> T:
        """Run ``operation`` if the breaker is closed, else raise DatabaseUnavailable at once.
        The operation's DatabaseUnavailable counts as a failure (unless ``counts`` says it
        does not: then as nothing), its result as a success."""
        if not self.closed:
            raise DatabaseUnavailable(self.name, BreakerOpen("breaker open"))
        try:
            result = await operation()
        except BusinessError:
            raise  # the database answered: neither a failure nor a success
        except DatabaseUnavailable as exc:
            if counts is None or counts(exc):
                await self.failed(exc)
            raise
        await self.succeeded()
        return result

    async def succeeded(self) -> None:
        if self.closed:
            await self._report(_succeed)

    async def failed(self, exc: BaseException) -> None:
        if self.closed:
            await self._report(_fail, exc)
            if not self.closed:
                self._opened.set()

    async def keep_probing(self, probe: Callable[[], Awaitable[object]]) -> None:
        """Background task for the process's lifetime: while open, ``probe`` every
        ``probe_seconds`` (each bounded by ``probe_timeout``); the first success closes."""
        while True:
            await self._opened.wait()
            await asyncio.sleep(self.probe_seconds)
            try:
                async with asyncio.timeout(self.probe_timeout):
                    await probe()
            except Exception as exc:  # still out: stay open, probe again
                BREAKER_PROBES.labels(breaker=self.name, outcome="failed").inc()
                log.debug("breaker %s: probe failed: %s: %s", self.name, type(exc).__name__, exc)
                continue
            BREAKER_PROBES.labels(breaker=self.name, outcome="ok").inc()
            self._opened.clear()
            self._cb.close()  # the listener logs and counts open -> closed

    async def _report(self, outcome: Callable[..., Awaitable[None]], *args: Any) -> None:
        # A failure comes back raised (and as CircuitBreakerError when it opens the breaker);
        # the caller's own outcome is what it must see.
        with suppress(Exception):
            await self._cb.call_async(outcome, *args)
