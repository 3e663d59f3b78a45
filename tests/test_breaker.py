"""The breaker's contract: no customer request is ever a trial (a background probe closes it),
business answers are neither failures nor successes, no waiting while open."""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from shop.breaker import Breaker
from shop.errors import DatabaseUnavailable, ProductNotFound


async def fail() -> None:
    raise DatabaseUnavailable("test", ConnectionRefusedError())


async def business() -> None:
    raise ProductNotFound()


async def ok() -> str:
    return "ok"


async def trip(breaker: Breaker, times: int) -> None:
    for _ in range(times):
        with pytest.raises(DatabaseUnavailable):
            await breaker.call(fail)


@asynccontextmanager
async def probing(breaker: Breaker, probe: Callable[[], Awaitable[object]],
                  ) -> AsyncIterator[None]:
    task = asyncio.create_task(breaker.keep_probing(probe))
    try:
        yield
    finally:
        task.cancel()


async def test_opens_after_fail_max_and_answers_at_once() -> None:
    breaker = Breaker("t-open", fail_max=3, probe_seconds=60)
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


async def test_no_customer_call_is_a_trial_however_long_it_stays_open() -> None:
    breaker = Breaker("t-no-trial", fail_max=1, probe_seconds=0.05)
    await trip(breaker, 1)
    entered = 0

    async def customer() -> str:
        nonlocal entered
        entered += 1
        return "ok"

    async with probing(breaker, fail):  # the database is still out
        await asyncio.sleep(0.3)
        results = await asyncio.gather(*(breaker.call(customer) for _ in range(50)),
                                       return_exceptions=True)
    assert entered == 0
    assert all(isinstance(r, DatabaseUnavailable) for r in results)
    assert breaker.state == "open"


async def test_a_successful_probe_closes_it() -> None:
    breaker = Breaker("t-probe", fail_max=1, probe_seconds=0.05)
    await trip(breaker, 1)
    probes = 0

    async def back_on_the_third() -> None:
        nonlocal probes
        probes += 1
        if probes < 3:
            raise ConnectionRefusedError()

    async with probing(breaker, back_on_the_third):
        for _ in range(100):
            if breaker.closed:
                break
            await asyncio.sleep(0.01)
    assert probes == 3
    assert breaker.state == "closed"
    assert await breaker.call(ok) == "ok"


async def test_a_hanging_probe_is_bounded_and_keeps_it_open() -> None:
    breaker = Breaker("t-hang", fail_max=1, probe_seconds=0.05, probe_timeout=0.1)
    await trip(breaker, 1)
    probes = 0

    async def hang() -> None:
        nonlocal probes
        probes += 1
        await asyncio.sleep(3600)

    async with probing(breaker, hang):
        await asyncio.sleep(0.5)
    assert probes >= 2  # each timed out, and the next one ran
    assert breaker.state == "open"


async def test_outcomes_of_calls_in_flight_when_it_opened_do_not_count() -> None:
    breaker = Breaker("t-late", fail_max=1, probe_seconds=60)
    release = asyncio.Event()

    async def slow_ok() -> str:
        await release.wait()
        return "ok"

    in_flight = asyncio.create_task(breaker.call(slow_ok))
    await asyncio.sleep(0)
    await trip(breaker, 1)
    release.set()
    assert await in_flight == "ok"
    assert breaker.state == "open"  # only the probe closes it


async def test_failing_says_a_closed_breaker_saw_a_failure_last() -> None:
    breaker = Breaker("t-failing", fail_max=3, probe_seconds=60)
    assert not breaker.failing
    await trip(breaker, 1)
    assert breaker.failing
    await breaker.call(ok)
    assert not breaker.failing


async def test_business_errors_do_not_reset_the_failure_count() -> None:
    breaker = Breaker("t-biz-closed", fail_max=3, probe_seconds=60)
    await trip(breaker, 2)
    with pytest.raises(ProductNotFound):
        await breaker.call(business)
    await trip(breaker, 1)
    assert breaker.state == "open"  # 3 consecutive infrastructure failures, 404 ignored


async def test_success_resets_the_failure_count() -> None:
    breaker = Breaker("t-reset", fail_max=3, probe_seconds=60)
    await trip(breaker, 2)
    await breaker.call(ok)
    await trip(breaker, 2)
    assert breaker.state == "closed"
