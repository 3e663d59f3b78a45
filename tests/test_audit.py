"""The answer audit and the clients that retry: every answer held against what the database
finally holds, and a client that tries a failed request again with the same key and body."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter, defaultdict
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

from chaos_lab.audit import audit
from loadtest.traffic import Outcome, TrafficProfile, backoff, generate

ORDER = "11111111-1111-1111-1111-111111111111"


def history(*statuses: int, order_id: str = ORDER, request: int = 1) -> list[Outcome]:
    return [Outcome(at=float(i), kind="write", status=status, order_id=order_id,
                    request=request, attempt=i + 1, final=i == len(statuses) - 1)
            for i, status in enumerate(statuses)]


@pytest.mark.parametrize(("statuses", "final", "false"), [
    ((201,), "confirmed", 0),
    ((201,), "rejected", 1),  # confirmed, the database says otherwise
    ((201,), None, 1),
    ((202,), "confirmed", 0),
    ((202,), "failed", 0),  # accepted, then decided: failed is a final state
    ((409,), "rejected", 0),
    ((409,), None, 0),
    ((409,), "confirmed", 1),  # refused, yet confirmed
    ((422,), "confirmed", 1),
    ((503,), None, 0),
    ((503,), "confirmed", 1),  # "nothing happened", and nothing else could have made it
    ((503, 201), "confirmed", 0),  # the retry made it
    ((0, 503), "confirmed", 0),  # the first try's outcome was unknown: it may have made it
    ((504, 503), "confirmed", 0),
    ((202, 503), "confirmed", 1),  # "nothing happened" after the order was accepted
    ((504,), "confirmed", 0),  # unknown claims nothing
    ((504,), None, 0),
    ((0, 0, 0), "rejected", 0),
])
def test_each_answer_is_held_against_the_final_state(statuses: tuple[int, ...],
                                                     final: str | None, false: int) -> None:
    result = audit(history(*statuses), {ORDER: final} if final else {})
    assert result.false_answers == false, result.false
    assert sum(result.answers.values()) == len(statuses)


def test_lost_is_an_accepted_order_without_a_final_state() -> None:
    other = "22222222-2222-2222-2222-222222222222"
    writes = [*history(202), *history(504, 201, order_id=other, request=2)]
    result = audit(writes, {ORDER: "pending"})
    assert result.lost == 2 and result.orders == 2
    assert result.answers == {"201": 1, "202": 1, "409": 0, "4xx": 0, "503": 0, "unknown": 1}


def shop_that_fails_first() -> tuple[FastAPI, dict[str, list[tuple[float, Any]]]]:
    """Answers each order's first two tries 503 and 504, the third 201; records every try."""
    app = FastAPI()
    tries: dict[str, list[tuple[float, Any]]] = defaultdict(list)

    @app.post("/orders")
    async def order(request: Request, idempotency_key: str = Header(),
                    authorization: str = Header()) -> JSONResponse:
        body = await request.json()
        seen = tries[idempotency_key]
        seen.append((asyncio.get_running_loop().time(), (body, authorization)))
        status = {1: 503, 2: 504}.get(len(seen), 201)
        return JSONResponse({"source": "database"}, status_code=status)

    @app.get("/products")
    async def products() -> dict[str, Any]:
        return {"products": []}

    return app, tries


async def test_a_failed_request_is_tried_again_with_the_same_key_and_body() -> None:
    app, tries = shop_that_fails_first()
    profile = TrafficProfile(reads_per_second=0, writes_per_second=5, duration=1,
                             retry_base=0.2, max_tries=3)
    results = await generate("http://shop", profile, on_status=lambda _: None,
                             transport=httpx.ASGITransport(app=app))
    assert len(tries) == 5  # five orders, five keys
    for seen in tries.values():
        assert len(seen) == 3
        assert len({repr(what) for _, what in seen}) == 1  # same body, same credential
        gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(seen)]
        assert gaps[0] >= 0.1 and gaps[1] >= 0.2  # half the backoff at least, doubling
    assert Counter(o.status for o in results.outcomes) == {503: 5, 504: 5, 201: 5}
    assert results.failed_requests() == 0 and results.retries == 10
    assert {o.order_id for o in results.outcomes if o.attempt == 1} == \
        {o.order_id for o in results.outcomes if o.final}


async def test_a_request_failing_every_try_counts_once_as_failed() -> None:
    app, tries = shop_that_fails_first()
    profile = TrafficProfile(reads_per_second=0, writes_per_second=2, duration=1,
                             retry_base=0.05, max_tries=2)
    results = await generate("http://shop", profile, on_status=lambda _: None,
                             transport=httpx.ASGITransport(app=app))
    assert results.failed_requests() == 2 and len(results.outcomes) == 4
    assert all(len(seen) == 2 for seen in tries.values())


def test_backoff_doubles_with_jitter() -> None:
    for tried in (1, 2, 3):
        values = [backoff(tried, 0.5) for _ in range(200)]
        ceiling = 0.5 * 2 ** (tried - 1)
        assert ceiling / 2 <= min(values) and max(values) <= ceiling
        assert len(set(values)) > 100  # jittered


async def test_retries_stay_within_the_retry_budget() -> None:
    """Every try fails: the clients retry until their budget (a fifth of the requests plus a
    reserve) is spent, and no further: a shop in trouble is not offered three times its
    load."""
    app = FastAPI()

    @app.post("/orders")
    async def refuse() -> JSONResponse:
        return JSONResponse({"error": "no"}, status_code=503)

    profile = TrafficProfile(reads_per_second=0, writes_per_second=100, duration=1,
                             retry_base=0.01, max_tries=3, retry_ratio=0.2, retry_reserve=5)
    results = await generate("http://shop", profile, on_status=lambda _: None,
                             transport=httpx.ASGITransport(app=app))
    assert results.failed_requests() == 100
    assert results.retries <= 5 + 0.2 * 100, results.retries
