"""The surge: more orders than the shop can take, offered open loop, from one process.

First a probe measures the shop's capacity in the same run (``probe_connections`` clients
ordering back to back, closed loop: the orders answered 201 or 409 per second); then orders
are offered at ``factor`` times that rate for ``seconds``, on schedule whether or not earlier
ones were answered (open loop: an overloaded shop cannot slow its clients down). Each order
has its own key and body, spread over the ten products, from one of ``clients`` customers
(each its own credential). A failed try (no answer within ``timeout``, or a 5xx) is tried
again with the same key and body: at once (``resend="at-once"``: a retry storm), after a
jittered backoff within a retry budget (``"backoff"``), or not at all (``"never"``).

Why a hand-written HTTP/1.1 client on uvloop (measured with ``chaos-shop bench --part
generators``, BENCHMARKS.md): httpx and aiohttp cost too much CPU per request to offer
several thousand requests a second from one process on the lab's two cores, which the shop
needs too; a protocol that writes a request and reads a status line and a Content-Length
body does, keeping every try's answer for the audit. It speaks just what the shop answers
(HTTP/1.1, keep-alive, Content-Length bodies).

    python -m loadtest.surge http://127.0.0.1:8080 --factor 5 --seconds 30 --out surge.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import ssl
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple
from urllib.parse import urlsplit

from loadtest.traffic import backoff

Resend = Literal["never", "at-once", "backoff"]
PRODUCTS = 10
WARM_CONNECTIONS = 1024  # opened before the surge: no connection storm at its start
RETRY_BUDGET_RATIO = 0.1  # "backoff": retries at most a tenth of the requests (SRE book)


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request in flight at a time. A request's
    timeout is the pool's sweep, not a timer of its own (a timer per request costs more than
    the request)."""

    def __init__(self) -> None:
        self.transport: asyncio.BaseTransport | None = None
        self.buffer = b""
        self.answer: asyncio.Future[int] | None = None
        self.deadline = 0.0
        self.open = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's is not an asyncio.Transport, but writes alike

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end]
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"connection" and value.strip().lower() == b"close":
                self.open = False
        if length is None or not head.startswith(b"HTTP/1.1 "):  # not what the shop sends
            self.fail()
            return
        if len(self.buffer) < end + 4 + length:
            return
        self.buffer = self.buffer[end + 4 + length:]
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(int(head[9:12]))

    def fail(self) -> None:
        """No answer (none readable, or none in time): no status, and no more connection (a
        late answer must not be taken for the next request's)."""
        self.open = False
        if self.transport is not None:
            self.transport.close()
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(0)

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(0)

    def send(self, request: bytes, deadline: float) -> asyncio.Future[int]:
        """The answer's status (0: none before ``deadline``, the loop's clock)."""
        assert self.transport is not None
        self.answer = asyncio.get_running_loop().create_future()
        self.deadline = deadline
        self.transport.write(request)  # type: ignore[attr-defined]
        return self.answer


@dataclass
class Pool:
    """At most ``size`` keep-alive connections, opened before the surge: a client library's
    pool, not a connection per request. A request finding them all busy waits for the first
    one given back, its wait counted in its latency (the clock starts when it was due). With
    no bound, a slow shop makes the generator open connections by the thousand, whose set-up
    costs the shared CPU more than the requests (and a full backlog drops their SYNs)."""

    host: str
    port: int
    tls: bool = False  # https: the ALB (its certificate checked, as any client's)
    size: int = 4096  # the entry's backlog (the lab's nginx: backlog=4096)
    idle: list[Connection] = field(default_factory=list)
    busy: set[Connection] = field(default_factory=set)
    waiting: deque[asyncio.Future[Connection | None]] = field(default_factory=deque)
    opened: int = 0  # open now, idle or busy

    async def warm(self, count: int) -> None:
        """Open ``count`` connections now (before the traffic), as far as the pool allows."""
        made = await asyncio.gather(*(self._open() for _ in range(min(count, self.size)
                                                                  - self.opened)))
        for conn in made:
            if conn is not None:
                self.give_back(conn)

    async def _open(self) -> Connection | None:
        self.opened += 1
        try:
            _, conn = await asyncio.get_running_loop().create_connection(
                Connection, self.host, self.port,
                ssl=ssl.create_default_context() if self.tls else None)
        except OSError:
            self.opened -= 1
            return None
        return conn

    async def take(self) -> Connection | None:
        """An open connection, or None when one could not be opened."""
        while self.idle:
            kept = self.idle.pop()
            if kept.open:
                self.busy.add(kept)
                return kept
            self.opened -= 1
        conn: Connection | None
        if self.opened < self.size:
            conn = await self._open()
        else:
            wait: asyncio.Future[Connection | None] = (
                asyncio.get_running_loop().create_future())
            self.waiting.append(wait)
            try:
                conn = await wait
            except asyncio.CancelledError:
                handed = wait.result() if wait.done() and not wait.cancelled() else None
                if handed is not None:
                    self.give_back(handed)  # handed over as the waiter gave up
                raise
            if conn is None:  # a closed one was handed over: open its replacement
                conn = await self._open()
        if conn is not None:
            self.busy.add(conn)
        return conn

    def give_back(self, conn: Connection) -> None:
        self.busy.discard(conn)
        while self.waiting:
            wait = self.waiting.popleft()
            if not wait.done():
                if conn.open:
                    wait.set_result(conn)
                else:
                    self.opened -= 1
                    wait.set_result(None)
                return
        if conn.open:
            self.idle.append(conn)
        else:
            self.opened -= 1

    async def sweep(self) -> None:
        """Every tenth of a second: requests past their deadline get no answer."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.1)
            now = loop.time()
            for conn in [c for c in self.busy if c.deadline < now]:
                conn.fail()


class Try(NamedTuple):
    """One try, as the audit and the figures read it."""

    at: float  # epoch seconds when it was sent
    status: int  # 0: no answer (timeout, refused connection)
    latency_ms: float
    request: int
    attempt: int
    product: int
    phase: str  # "probe" or "surge"


@dataclass
class SurgeReport:
    run: str  # the keys' prefix: surge-<run>-<n>
    clients: int
    capacity: float  # orders decided (201, 409) per second, closed loop, before the surge
    offered: float  # orders per second offered during the surge, open loop
    started: float  # epoch seconds: the surge's first and last scheduled order
    ended: float
    tries: list[Try] = field(default_factory=list)
    # the most an order was sent after it was due (ms): past a few, the figures measure the
    # generator (its loop behind), not only the shop
    late_ms: float = 0.0

    def credential(self, request: int) -> str:
        return f"surge-{self.run}-client-{request % self.clients}"

    def key(self, request: int) -> str:
        return f"surge-{self.run}-{request}"

    @staticmethod
    def product(request: int) -> int:
        return 1 + request % PRODUCTS

    def save(self, path: Path) -> None:
        data = asdict(self)
        data["tries"] = [[t.at, t.status, t.latency_ms, t.request, t.attempt, t.product,
                          t.phase] for t in self.tries]
        path.write_text(json.dumps(data))

    @classmethod
    def load(cls, path: Path) -> SurgeReport:
        data = json.loads(path.read_text())
        tries = [Try(*row) for row in data.pop("tries")]
        return cls(**data, tries=tries)


class Surge:
    def __init__(self, url: str, clients: int = 100, timeout: float = 5.0,
                 resend: Resend = "never", max_tries: int = 3,
                 say: Callable[[str], None] = print) -> None:
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        self.pool = Pool(parts.hostname or "127.0.0.1", parts.port or (443 if tls else 80), tls)
        self.report = SurgeReport(secrets.token_hex(4), clients, 0.0, 0.0, 0.0, 0.0)
        self.timeout = timeout
        self.resend = resend
        self.max_tries = max_tries
        self.budget = 10.0  # retry tokens (the "backoff" clients' budget)
        self.say = say
        self.next_request = 0

    def _request(self, n: int) -> bytes:
        body = b'{"product_id": %d, "quantity": 1}' % self.report.product(n)
        return (b"POST /orders HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nIdempotency-Key: %s\r\nAuthorization: Bearer %s"
                b"\r\n\r\n%s" % (self.pool.host.encode(), len(body), self.report.key(n).encode(),
                                 self.report.credential(n).encode(), body))

    async def order(self, phase: str, due: float | None = None) -> int:
        """One order and its retries; the last try's status. ``due``: when it was to be sent
        (epoch seconds; now if None): its first try's latency and timeout count from then,
        so a generator running late, or a wait for a connection, is in the figures."""
        n, self.next_request = self.next_request, self.next_request + 1
        request = self._request(n)
        status = 0
        self.budget += RETRY_BUDGET_RATIO
        loop = asyncio.get_running_loop()
        for attempt in range(1, self.max_tries + 1):
            now = time.time()
            sent = min(due, now) if attempt == 1 and due is not None else now
            deadline = loop.time() + self.timeout - (now - sent)
            if self.pool.idle:  # no timer when none is needed (one costs more than a try)
                conn: Connection | None = await self.pool.take()
            else:
                try:  # waiting for a connection counts
                    async with asyncio.timeout_at(deadline):
                        conn = await self.pool.take()
                except TimeoutError:
                    conn = None
            if conn is None:
                status = 0
            else:
                status = await conn.send(request, deadline)
                self.pool.give_back(conn)
            self.report.tries.append(Try(sent, status, round((time.time() - sent) * 1000, 2),
                                         n, attempt, self.report.product(n), phase))
            if status and status < 500:
                return status
            if self.resend == "never" or attempt == self.max_tries:
                return status
            if self.resend == "backoff":
                if self.budget < 1:
                    return status
                self.budget -= 1
                await asyncio.sleep(backoff(attempt, 0.5))
        return status

    async def probe(self, seconds: float, connections: int = 32, warmup: float = 2.0) -> float:
        """Closed loop: ``connections`` clients ordering back to back. Orders decided per
        second (201 and 409: the order transaction ran), not counting the first ``warmup``
        seconds: the lab's small stock sells out in them, so the probe measures the work the
        surge then brings (a sold-out order still runs the order transaction), not the
        dearer confirmations of its first second."""
        decided = 0
        await self.pool.warm(connections)
        counted_from = time.monotonic() + warmup
        stop = counted_from + seconds

        async def client() -> None:
            nonlocal decided
            while time.monotonic() < stop:
                if await self.order("probe") in (201, 409) and time.monotonic() >= counted_from:
                    decided += 1

        await asyncio.gather(*(client() for _ in range(connections)))
        self.report.capacity = round(decided / seconds, 1)
        return self.report.capacity

    async def offer(self, rate: float, seconds: float) -> None:
        """Open loop: an order every 1/``rate`` seconds for ``seconds``, answered or not
        (those due start together, every millisecond: one timer a millisecond, not one per
        order)."""
        tasks: set[asyncio.Task[int]] = set()
        count = int(rate * seconds)
        await self.pool.warm(WARM_CONNECTIONS)
        start = time.monotonic()
        self.report.started = epoch = time.time()
        next_status, sent = 5.0, 0
        while sent < count:
            elapsed = time.monotonic() - start
            due = min(count, int(elapsed * rate) + 1)
            # how late this batch starts: the generator's own lag, reported beside the shop's
            self.report.late_ms = max(self.report.late_ms,
                                      round((elapsed - sent / rate) * 1000, 1))
            for i in range(sent, due):
                task = asyncio.ensure_future(self.order("surge", epoch + i / rate))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            sent = due
            if elapsed >= next_status:
                self.say(self._status(elapsed))
                next_status += 5.0
            await asyncio.sleep(0.001)
        self.report.ended = time.time()
        self.report.offered = round(count / max(time.monotonic() - start, 1e-6), 1)
        if tasks:
            await asyncio.wait(tasks)

    def _status(self, elapsed: float) -> str:
        recent = [t for t in self.report.tries if t.phase == "surge"
                  and t.at > time.time() - 5]
        by = {s: sum(1 for t in recent if t.status == s) for s in (201, 409, 503)}
        return (f"SURGE t={elapsed:4.0f}s last 5 s: 201={by[201]} 409={by[409]} "
                f"503={by[503]} other={len(recent) - sum(by.values())}")


async def surge(url: str, factor: float, seconds: float, probe_seconds: float = 5,
                resend: Resend = "never", clients: int = 100, wait: float = 5.0,
                say: Callable[[str], None] = print) -> SurgeReport:
    """The probe, then the surge; every try of both in the report. ``wait``: the clients'
    timeout, seconds."""
    generator = Surge(url, clients, wait, resend, say=say)
    sweeping = asyncio.ensure_future(generator.pool.sweep())
    try:
        return await _surge(generator, factor, seconds, probe_seconds, resend, say)
    finally:
        sweeping.cancel()


async def _surge(generator: Surge, factor: float, seconds: float, probe_seconds: float,
                 resend: Resend, say: Callable[[str], None]) -> SurgeReport:
    capacity = await generator.probe(probe_seconds)
    say(f"SURGE capacity {capacity:g} orders/s (closed loop, 32 clients, "
            f"{probe_seconds:g} s); offering {factor:g}x = {capacity * factor:.0f}/s for "
            f"{seconds:g} s, resend {resend}")
    await generator.offer(max(capacity, 1.0) * factor, seconds)
    return generator.report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the shop's entry URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--factor", type=float, default=5.0, help="times the capacity")
    parser.add_argument("--seconds", type=float, default=30.0, help="the surge's length")
    parser.add_argument("--probe", type=float, default=5.0, help="the capacity probe's length")
    parser.add_argument("--resend", choices=["never", "at-once", "backoff"], default="never")
    parser.add_argument("--clients", type=int, default=100, help="distinct credentials")
    parser.add_argument("--out", type=Path, help="where to write every try (JSON)")
    args = parser.parse_args()
    if args.factor <= 0 or args.seconds <= 0 or args.probe <= 0 or args.clients < 1:
        parser.error("factor, seconds and probe must be positive, clients at least 1")
    try:
        import uvloop  # uvicorn[standard]'s: the event loop that keeps up
        uvloop.install()
    except ImportError:  # pragma: no cover - the plain loop, slower
        pass
    report = asyncio.run(surge(args.url, args.factor, args.seconds, args.probe, args.resend,
                               args.clients, say=lambda line: print(line, flush=True)))
    if args.out:
        report.save(args.out)
    decided = sum(1 for t in report.tries if t.phase == "surge" and t.status in (201, 409))
    print(f"SURGE done: capacity {report.capacity:g}/s, offered {report.offered:g}/s, "
          f"goodput {decided / max(report.ended - report.started, 1e-6):.0f}/s, "
          f"sent up to {report.late_ms:g} ms late",
          file=sys.stderr if args.out is None else sys.stdout)


if __name__ == "__main__":
    main()
