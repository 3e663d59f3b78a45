"""The surge (issue 22): the generator (loadtest.surge) against a real HTTP server on loopback,
and the figures the runner draws from its tries (chaos_lab.surge), judged by the hypothesis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from chaos_lab.model import Hypothesis, Measured, SurgeFigures, judge
from chaos_lab.surge import as_outcomes, figures
from loadtest.surge import Pool, Surge, SurgeReport, Try
from loadtest.traffic import Outcome, TrafficResults


@dataclass
class Shop:
    """A stand-in entry: answers ``POST /orders`` after ``delay`` seconds, 503 + Retry-After to
    the first try of every other key (``shed_first``), 201 otherwise; it keeps what it got."""

    delay: float = 0.0
    shed_first: bool = False
    connections: int = 0
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)  # (key, body)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:-2])
                body = await reader.readexactly(int(headers[b"Content-Length"]))
                key = headers[b"Idempotency-Key"]
                first = all(k != key for k, _ in self.requests)
                self.requests.append((key, body))
                await asyncio.sleep(self.delay)
                shed = self.shed_first and first and int(key.rsplit(b"-", 1)[1]) % 2 == 0
                status, reason = (b"503", b"Service Unavailable") if shed else (b"201", b"Created")
                answer = b'{"ok": true}'
                writer.write(b"HTTP/1.1 %s %s\r\nContent-Length: %d\r\nRetry-After: 1\r\n\r\n%s"
                             % (status, reason, len(answer), answer))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def entry(shop: Shop) -> AsyncIterator[str]:
    server = await asyncio.start_server(shop.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


def surge_tries(report: SurgeReport) -> list[Try]:
    return [t for t in report.tries if t.phase == "surge"]


async def test_orders_are_offered_on_schedule_whatever_the_answers_take() -> None:
    """Open loop: 200 orders a second for a second from a shop that takes 0.2 s to answer; a
    closed loop of 32 clients would have sent about 160. Each order has its own key."""
    shop = Shop(delay=0.2)
    async with entry(shop) as url:
        generator = Surge(url, timeout=5)
        await generator.offer(200, 1.0)
    tries = surge_tries(generator.report)
    assert len(tries) == 200 and all(t.status == 201 for t in tries)
    assert len({key for key, _ in shop.requests}) == 200
    assert min(t.latency_ms for t in tries) >= 190  # the shop's delay is in every latency
    assert 150 <= generator.report.offered <= 210


async def test_a_refused_try_is_resent_at_once_with_the_same_key_and_body() -> None:
    shop = Shop(shed_first=True)
    async with entry(shop) as url:
        generator = Surge(url, resend="at-once")
        await generator.offer(50, 1.0)
    tries = surge_tries(generator.report)
    refused = [t for t in tries if t.status == 503]
    assert len(refused) == 25 and all(t.attempt == 1 for t in refused)
    again = {t.request for t in tries if t.attempt == 2}
    assert again == {t.request for t in refused}
    assert all(t.status == 201 for t in tries if t.attempt == 2)
    bodies: dict[bytes, set[bytes]] = {}
    for key, body in shop.requests:
        bodies.setdefault(key, set()).add(body)
    assert all(len(sent) == 1 for sent in bodies.values())  # the same body every time
    never = Surge(url="http://127.0.0.1:1", resend="never")
    assert never.max_tries == 3 and never.resend == "never"


async def test_the_connections_are_bounded_and_waiting_for_one_counts() -> None:
    """A pool of 4 connections, a shop that takes 0.1 s: 80 orders due within a second wait
    their turn for a connection, and that wait is in their latency (it counts from when the
    order was due), not hidden by a generator that sends late."""
    shop = Shop(delay=0.1)
    async with entry(shop) as url:
        generator = Surge(url, timeout=10)
        generator.pool = Pool(generator.pool.host, generator.pool.port, size=4)
        started = time.monotonic()
        await generator.offer(80, 1.0)
        took = time.monotonic() - started
    tries = surge_tries(generator.report)
    assert shop.connections <= 4
    assert all(t.status == 201 for t in tries)
    # 80 answers through 4 connections at 0.1 s each take 2 s: the last orders waited ~1 s
    assert took >= 1.9
    assert max(t.latency_ms for t in tries) >= 900


def report_of(tries: list[Try], started: float, ended: float, capacity: float) -> SurgeReport:
    report = SurgeReport("t", 10, capacity, offered=len(tries) / (ended - started),
                         started=started, ended=ended)
    report.tries = tries
    return report


def test_the_figures_of_a_surge() -> None:
    """Traffic from t=0 (epoch 1000); the surge from 1010 to 1020 (10 s), 100 orders a second
    offered: 60 decided a second (201/409) answered in 50 ms, 40 shed (503) in 2 ms; the
    customers' p99 was 10 ms before, 400 ms in the two seconds after the surge, then 10 ms."""
    epoch = 1000.0
    tries = []
    n = 0
    for second in range(10):
        for i in range(100):
            status = (201 if i % 2 else 409) if i < 60 else 503
            tries.append(Try(epoch + 10 + second + i / 100, status, 50.0 if i < 60 else 2.0,
                             n, 1, 1 + n % 10, "surge"))
            n += 1
    report = report_of(tries, epoch + 10, epoch + 20, capacity=50.0)
    customers = TrafficResults([
        *(Outcome(t / 10, "read", 200, latency_ms=10.0) for t in range(0, 100)),
        *(Outcome(20 + t / 10, "read", 200, latency_ms=400.0) for t in range(0, 20)),
        *(Outcome(22 + t / 10, "read", 200, latency_ms=10.0) for t in range(0, 80))])
    got = figures(report, customers, epoch)
    assert got.goodput == 60.0 and got.goodput_ratio == 1.2
    assert got.shed_p99_ms == 2.0
    assert got.admitted_p99_ms == 50.0
    assert got.wait_ms == 400.0
    assert got.settle_seconds == 1.9  # the last slow answer, at 21.9 s
    # every try of the surge goes to the audit, with the order its key and body name
    audited = as_outcomes(report, epoch)
    assert len(audited) == 1000 and all(o.order_id for o in audited)
    assert len({o.order_id for o in audited}) == 1000


def test_a_surge_that_never_settles_fails_its_hypothesis() -> None:
    h = Hypothesis(max_failed_requests=300, max_p99_latency_ms=5000, max_recovery_seconds=60,
                   min_goodput_ratio=0.9, max_admitted_p99_ms=250, max_shed_p99_ms=10,
                   max_wait_ms=4000, max_settle_seconds=2)
    good = SurgeFigures(capacity=100, offered=200, goodput=95, admitted_p99_ms=200,
                        shed_p99_ms=5, wait_ms=3000, settle_seconds=1)
    bad = SurgeFigures(capacity=100, offered=200, goodput=50, admitted_p99_ms=900,
                       shed_p99_ms=40, wait_ms=6000, settle_seconds=None)

    def failed(surge: SurgeFigures) -> set[str]:
        measured = Measured(failed_requests=10, lost_orders=0, p99_latency_ms=100,
                            recovery_seconds=5, stock_consistent=True, dlq=0,
                            healthy_after=True, surge=surge)
        return {c.name for c in judge(h, measured) if not c.passed}

    assert failed(good) == set()
    assert len(failed(bad)) == 5
