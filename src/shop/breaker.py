"""A circuit breaker per database endpoint, on top of aiobreaker.

aiobreaker 1.2 keeps the state machine (closed, open, half-open), the failure counter and the
listeners. Two of its behaviours do not fit a shop, so this wrapper decides what it is told:

* in half-open it lets every concurrent caller through: here exactly one trial call runs at a
  time (an asyncio lock taken without waiting), the others get the fallback at once;
* it counts excluded exceptions as successes, so a 404 would close a half-open breaker and
  reset the failure count: here business answers are not reported to it at all.

Outcomes are reported through aiobreaker's public ``call_async``, so its listeners (metrics,
logs) see every transition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any, TypeVar

import aiobreaker
from aiobreaker import CircuitBreakerError, CircuitBreakerState

from shop.errors import BusinessError, DatabaseUnavailable
from shop.metrics import BREAKER_STATE, BREAKER_TRANSITIONS

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


class Breaker:
    def __init__(self, name: str, fail_max: int, reset_seconds: float) -> None:
        self.name = name
        self._cb = aiobreaker.CircuitBreaker(
            fail_max=fail_max,
            timeout_duration=timedelta(seconds=reset_seconds),
            listeners=[_Listener()],
            name=name,
        )
        self._trial = asyncio.Lock()
        BREAKER_STATE.labels(breaker=name).set(0)

    @property
    def state(self) -> str:
        """closed, open, or half-open (open with its recovery time elapsed counts as half-open)."""
        state = self._cb.current_state
        if state is CircuitBreakerState.OPEN and self._recovery_elapsed():
            return "half-open"
        return _name(state)

    def _recovery_elapsed(self) -> bool:
        # aiobreaker stores opened_at with utcnow() and compares with utcnow() itself.
        opened_at = self._cb._state_storage.opened_at
        return opened_at is None or datetime.utcnow() >= opened_at + self._cb.timeout_duration

    async def call(self, operation: Callable[[], Awaitable[T]],
                   trial: Callable[[], Awaitable[T]] | None = None) -> T:
        """Run ``operation`` if the breaker allows it, else raise DatabaseUnavailable at once.
        In half-open, ``trial`` (one attempt, no retries) runs instead when given: the trial
        caller should learn quickly whether the database is back, not spend a retry budget."""
        state = self.state
        if state == "closed":
            return await self._observe(operation)
        if state == "open" or self._trial.locked():
            raise DatabaseUnavailable(self.name, CircuitBreakerError("breaker open", None))
        async with self._trial:  # the single trial call of the half-open state
            return await self._observe(trial or operation)

    async def _observe(self, operation: Callable[[], Awaitable[T]]) -> T:
        try:
            result = await operation()
        except BusinessError:
            raise  # the database answered: neither a failure nor a success
        except DatabaseUnavailable as exc:
            await self._report(_fail, exc)
            raise
        await self._report(_succeed)
        return result

    async def _report(self, outcome: Callable[..., Awaitable[None]], *args: Any) -> None:
        # A report can race with a transition made by a concurrent call (aiobreaker raises
        # CircuitBreakerError when it opens, or when it is still open): the state is already
        # what it should be, and the caller's own outcome is what it must see.
        with suppress(CircuitBreakerError, DatabaseUnavailable):
            await self._cb.call_async(outcome, *args)
