"""The breaker's contract (resilience4j's, not aiobreaker 1.2's defaults): one trial call in
half-open, business answers neither failures nor successes, no waiting while open."""

import asyncio
import time

import pytest

from shop.breaker import Breaker
from shop.errors import DatabaseUnavailable, ProductNotFound


async def fail() -> None:
    raise DatabaseUnavailable("test", ConnectionRefusedError())


async def business() -> None:
    raise ProductNotFound()


async def trip(breaker: Breaker, times: int) -> None:
    for _ in range(times):
        with pytest.raises(DatabaseUnavailable):
            await breaker.call(fail)


async def test_opens_after_fail_max_and_answers_at_once() -> None:
    breaker = Breaker("t-open", fail_max=3, reset_seconds=60)
    await trip(breaker, 3)
    assert breaker.state == "open"
    calls = 0

    async def counted() -> None:
        nonlocal calls
        calls += 1

    started = time.perf_counter()
    with pytest.raises(DatabaseUnavailable):
        await breaker.call(counted)
    assert calls == 0
    assert time.perf_counter() - started < 0.01


async def test_half_open_lets_exactly_one_of_50_concurrent_calls_through() -> None:
    breaker = Breaker("t-half", fail_max=1, reset_seconds=0.2)
    await trip(breaker, 1)
    await asyncio.sleep(0.25)
    assert breaker.state == "half-open"
    entered = 0

    async def slow_trial() -> str:
        nonlocal entered
        entered += 1
        await asyncio.sleep(0.2)
        return "ok"

    results = await asyncio.gather(*(breaker.call(slow_trial) for _ in range(50)),
                                   return_exceptions=True)
    assert entered == 1
    assert results.count("ok") == 1
    assert sum(isinstance(r, DatabaseUnavailable) for r in results) == 49
    assert breaker.state == "closed"  # the trial succeeded


async def test_failed_trial_reopens() -> None:
    breaker = Breaker("t-reopen", fail_max=1, reset_seconds=0.1)
    await trip(breaker, 1)
    await asyncio.sleep(0.15)
    await trip(breaker, 1)
    assert breaker.state == "open"


async def test_business_errors_do_not_close_a_half_open_breaker() -> None:
    breaker = Breaker("t-biz-half", fail_max=1, reset_seconds=0.1)
    await trip(breaker, 1)
    await asyncio.sleep(0.15)
    with pytest.raises(ProductNotFound):
        await breaker.call(business)
    assert breaker.state == "half-open"  # still waiting for a real trial


async def test_business_errors_do_not_reset_the_failure_count() -> None:
    breaker = Breaker("t-biz-closed", fail_max=3, reset_seconds=60)
    await trip(breaker, 2)
    with pytest.raises(ProductNotFound):
        await breaker.call(business)
    await trip(breaker, 1)
    assert breaker.state == "open"  # 3 consecutive infrastructure failures, 404 ignored


async def test_success_resets_the_failure_count() -> None:
    breaker = Breaker("t-reset", fail_max=3, reset_seconds=60)
    await trip(breaker, 2)

    async def ok() -> None:
        return None

    await breaker.call(ok)
    await trip(breaker, 2)
    assert breaker.state == "closed"
