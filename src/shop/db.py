"""Database endpoints that survive a failover, and the fragile baseline they are compared with.

An :class:`Endpoint` is one database address (the writer or the reader). ``run(operation)``
hands the operation a connection and returns what it returns. In the resilient mode
(``SHOP_ENABLE_PROXY=true``) that goes through an asyncpg pool with a timeout on every acquire,
connect and statement; a connection-class error drops every pooled connection (the node behind
the endpoint may have changed) and the operation is retried with capped exponential backoff and
jitter until a time budget, or the request's deadline, runs out. In the fragile mode it uses one
persistent connection per process, never checked and never replaced: the way the reference
lab's app failed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from importlib import resources
from typing import Any, Generic, TypeVar, cast
from urllib.parse import urlsplit

import asyncpg
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_before_delay,
    wait_random_exponential,
)

from shop.background import run_in_background
from shop.breaker import Breaker
from shop.credentials import PasswordSource
from shop.errors import DatabaseNotReady, DatabaseUnavailable
from shop.metrics import DETACHED_WRITES
from shop.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
Operation = Callable[[asyncpg.Connection], Awaitable[T]]

MIGRATION_LOCK_ID = 0x5C0A5_5409  # any constant shared by every replica of every service


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release. asyncpg's default sends ``SELECT pg_advisory_unlock_all();
    CLOSE ALL; UNLISTEN *; RESET ALL`` every time: a round trip per request, and on RDS Proxy
    a statement that pins the client to its database connection (asyncpg issue #1153). The
    shop sets no session state (no SET, LISTEN, cursors or session advisory locks), and an open
    transaction is still rolled back by the pool before this runs."""


def keep_alive(conn: asyncpg.Connection, timeout: float) -> None:
    """TCP keepalive and TCP_USER_TIMEOUT on a connection's socket, so that a peer gone
    without a word (a dropped route, a NAT or firewall that forgot the flow: nothing answers,
    nothing resets) is noticed within ``timeout`` seconds and the operation on it fails as a
    connection error, instead of waiting for the commit timeout (a day)."""
    transport = getattr(conn, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # a unix socket: no network between the two ends
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", timeout / 3), ("TCP_KEEPINTVL", timeout / 6),
                          ("TCP_KEEPCNT", 3), ("TCP_USER_TIMEOUT", timeout * 1000)):
        if hasattr(socket, option):  # Linux; elsewhere the system's keepalive defaults
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), max(1, int(value)))


def is_auth_error(exc: BaseException) -> bool:
    """The database (or the proxy) refused the credentials: SQLSTATE 28P01 or 28000, or
    PgBouncer's own refusal, which it sends as 08P01 ("password authentication failed", or
    "SASL authentication failed" from SCRAM in PgBouncer 1.18). After a
    password rotation that is what every new connection meets until the source is read again."""
    if isinstance(exc, asyncpg.ProtocolViolationError):
        message = str(exc)
        return "password authentication failed" in message or \
            "SASL authentication failed" in message
    return isinstance(exc, asyncpg.InvalidPasswordError
                      | asyncpg.InvalidAuthorizationSpecificationError)


def is_connection_error(exc: BaseException) -> bool:
    """True for failures of the path to the database, never for a bad query or bad data.

    These are the errors a retry on a fresh connection can cure, and that a breaker and a
    fallback should handle: the socket closed or reset, a timeout, the server starting up or
    shutting down, a proxy that lost its target (PgBouncer answers with SQLSTATE 08P01), too
    many connections, SQLSTATE 25006 (a read-only transaction: the pooled connection still
    points at a writer that was demoted), and refused credentials (a rotated password).
    """
    if isinstance(exc, asyncpg.DataError):  # bad arguments: an InterfaceError, not a network one
        return False
    return is_auth_error(exc) or isinstance(
        exc,
        OSError
        | TimeoutError
        | asyncpg.PostgresConnectionError  # SQLSTATE class 08
        | asyncpg.InterfaceError  # "connection is closed", "connection was closed in the middle"
        # "cannot switch to state N; another operation is in progress": a connection handed
        # back while still consuming a failed answer (seen right after a failover, behind
        # PgBouncer). A fresh connection cures it; the pool is expired like for the others.
        | asyncpg.InternalClientError
        | asyncpg.CannotConnectNowError  # 57P03 starting up / proxy pausing
        | asyncpg.AdminShutdownError  # 57P01
        | asyncpg.CrashShutdownError  # 57P02
        | asyncpg.TooManyConnectionsError  # 53300
        | asyncpg.ReadOnlySQLTransactionError  # 25006 after a writer was demoted
        # 55P03: the order function's lock_timeout (migration 0005): the row is held by
        # someone else; the statement failed whole, and waiting longer would hold a connection.
        | asyncpg.LockNotAvailableError
        # 40P01: two batches of the group commit holding the same ids in opposite order; the
        # loser's statement was rolled back whole, and a retry replays it.
        | asyncpg.DeadlockDetectedError,
    )


class Endpoint:
    """One database endpoint: ``run(operation)`` is the only way the code touches it."""

    def __init__(
        self,
        name: str,
        url: str,
        settings: Settings,
        breaker: Breaker | None = None,
        *,
        primary: bool = False,
    ) -> None:
        self.name = name
        self.primary = primary  # the writer endpoint: its node must not be in recovery
        self.url = url
        self.resilient = settings.enable_proxy
        self.breaker = breaker
        self.password = PasswordSource(settings, urlsplit(url).password)
        self._settings = settings
        self._pool: asyncpg.Pool | None = None
        self._connection: asyncpg.Connection | None = None  # fragile mode only
        self._connection_lock = asyncio.Lock()
        self.ready = asyncio.Event()  # set once the schema is known to be in place
        # Writes left to finish past their caller's deadline (``run(detach=True)``) each keep a
        # pooled connection: at most half the pool, so that they never starve everything else,
        # and none past ``db_detached_write_seconds``, when its connection is closed.
        self.detached = 0
        self.max_detached = max(1, settings.db_pool_max_size // 2)
        self.detached_bound = settings.db_detached_write_seconds
        # Told how long each call took, from the wait for a connection to the answer (the
        # process's admission limit follows it: shop.admission).
        self.latency_observer: Callable[[float], None] | None = None
        # When an operation last returned (the event loop's clock), detached ones included.
        self.last_answer = -math.inf

    def answering(self) -> bool:
        """The database answered an operation within the last ``SHOP_FALLBACK_AFTER_SECONDS``:
        a call that times out now waited behind this process's own work (overload), it did
        not meet a dead database (which answers nobody). Under an outage this turns false
        that long after the last answer; with little traffic it is false most of the time,
        and a timeout counts as it always has."""
        return (asyncio.get_running_loop().time() - self.last_answer
                <= self._settings.fallback_after_seconds)

    def _counts(self, exc: DatabaseUnavailable) -> bool:
        """Whether the breaker hears this failure: not a timeout while the database answers
        others (overload is not an outage: opening would send every order to the fallback,
        the order table's and the queue's work added to a process with too much already)."""
        return not (isinstance(exc.cause, TimeoutError) and self.answering())

    @property
    def writes_stuck(self) -> bool:
        """Every detached slot taken: the process refuses writes until one ends."""
        return self.detached >= self.max_detached

    def _count_detached(self, change: int) -> None:
        self.detached += change
        DETACHED_WRITES.labels(endpoint=self.name).set(self.detached)

    async def _tune(self, conn: asyncpg.Connection) -> None:
        """Every new connection: see ``keep_alive``."""
        keep_alive(conn, self._settings.db_tcp_timeout_seconds)

    def _connect_kwargs(self) -> dict[str, Any]:
        s = self._settings
        return {
            # Asked of the source for every new connection; read again after a refusal.
            "password": self.password,
            "timeout": s.db_connect_timeout,
            "command_timeout": s.db_command_timeout,
            # Behind PgBouncer (transaction pooling) or RDS Proxy a named prepared statement
            # may land on another server connection, and pins the session on RDS Proxy.
            "statement_cache_size": 0,
        }

    async def open(self) -> None:
        """Create the pool. No network I/O: connections are made on first use."""
        if self.resilient and self._pool is None:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=0,
                max_size=self._settings.db_pool_max_size,
                max_inactive_connection_lifetime=60,
                reset=_keep_session,
                init=self._tune,
                **self._connect_kwargs(),
            )

    async def close(self) -> None:
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), timeout=5)
            except TimeoutError:
                self._pool.terminate()
            self._pool = None
        if self._connection is not None:
            self._connection.terminate()
            self._connection = None

    async def run(self, operation: Operation[T], *, wait_ready: bool = True,
                  deadline: float | None = None, detach: bool = False) -> T:
        """Run ``operation`` on a connection of this endpoint.

        ``deadline`` (the event loop's clock) bounds the whole call, retries and waits for a
        connection included. ``detach``: a write past the deadline is left to finish on its
        own instead of being cancelled, so that its connection is never torn down in the middle
        of a COMMIT (a commit cut short while it waits for the synchronous standby stays on the
        writer alone); the caller gets ``DatabaseUnavailable(may_have_applied=True)``.

        Raises :class:`DatabaseNotReady` before the schema is in place,
        :class:`DatabaseUnavailable` when the endpoint cannot be reached in time (or its
        breaker is open). Business exceptions raised by the operation pass through.
        """
        if wait_ready and not self.ready.is_set():
            raise DatabaseNotReady(self.name)
        if not self.resilient:
            return await self._run_fragile(operation)
        attempts = _Attempts(self, operation, deadline, detach)
        started = time.perf_counter()
        try:
            if self.breaker is None:
                return await attempts.with_retry()
            return await self.breaker.call(attempts.with_retry, counts=self._counts)
        finally:
            if self.latency_observer is not None and attempts.progress.started:
                self.latency_observer(time.perf_counter() - started)

    async def timed(self, operation: Operation[T], *, deadline: float | None = None,
                    detach: bool = False) -> tuple[T, float]:
        """``run`` plus how long it took, in milliseconds (reported as ``db_latency_ms``)."""
        started = time.perf_counter()
        result = await self.run(operation, deadline=deadline, detach=detach)
        return result, round((time.perf_counter() - started) * 1000, 2)

    async def ping(self) -> float:
        """One direct round trip (no retry, no breaker), in milliseconds: the deep health check."""
        started = time.perf_counter()
        select_one: Operation[Any] = lambda conn: conn.fetchval("SELECT 1")  # noqa: E731
        if self.resilient:
            await self._run_once(select_one, _Progress())
        else:
            await self._run_fragile(select_one)
        return round((time.perf_counter() - started) * 1000, 2)

    async def probe(self) -> None:
        """The breaker's background probe: one round trip on a pooled or new connection; on
        the writer endpoint, the node must also be a primary (after a failover the endpoint
        can still lead to the demoted writer for a while: it answers, but refuses writes)."""
        in_recovery = await self._run_once(
            lambda conn: conn.fetchval("SELECT pg_is_in_recovery()"), _Progress())
        if self.primary and in_recovery:
            raise asyncpg.ReadOnlySQLTransactionError("the writer endpoint leads to a standby")

    async def _run_once(self, operation: Operation[T], progress: _Progress) -> T:
        assert self._pool is not None, "Endpoint.open() was not awaited"
        try:
            async with self._pool.acquire(timeout=self._settings.db_acquire_timeout) as conn:
                progress.started = True  # from here on a write may reach the database
                progress.connection = conn
                # The pool hands out a proxy that behaves as the connection it wraps.
                result = await operation(cast(asyncpg.Connection, conn))
                self.last_answer = asyncio.get_running_loop().time()
                return result
        except Exception as exc:
            if is_auth_error(exc):
                # Pooled connections stay good (a password change does not end sessions):
                # only new ones need the new password.
                log.warning("%s endpoint: %s; reading the password again from %s",
                            self.name, type(exc).__name__, self.password.describe)
                self.password.invalidate()
            elif is_connection_error(exc):
                # The other pooled connections most likely lead to the same dead or demoted
                # node: replace them all on their next acquire instead of failing on each.
                log.warning("%s endpoint: %s: %s; resetting the pool", self.name,
                            type(exc).__name__, exc)
                await self._pool.expire_connections()
            raise

    async def _run_fragile(self, operation: Operation[T]) -> T:
        # One connection, made once, used forever; a lock because asyncpg connections do not
        # multiplex (the reference's sync worker had the same one-at-a-time behaviour).
        async with self._connection_lock:
            if self._connection is None:
                self._connection = await asyncpg.connect(self.url, **self._connect_kwargs())
                await self._tune(self._connection)
            return await operation(self._connection)


class _Progress:
    """Whether any attempt of one call got as far as running its operation, and on which
    connection (the last attempt's)."""

    started = False
    connection: Any = None


class _Attempts(Generic[T]):
    """The attempts of one ``Endpoint.run`` call, under its deadline."""

    def __init__(self, endpoint: Endpoint, operation: Operation[T], deadline: float | None,
                 detach: bool) -> None:
        self.endpoint = endpoint
        self.operation = operation
        self.deadline = deadline
        self.detach = detach
        self.progress = _Progress()

    def _unavailable(self, exc: BaseException) -> DatabaseUnavailable:
        return DatabaseUnavailable(self.endpoint.name, exc,
                                   may_have_applied=self.progress.started)

    async def with_retry(self) -> T:
        budget = self.endpoint._settings.retry_budget_seconds
        breaker = self.endpoint.breaker
        if breaker is not None and breaker.failing:
            budget = 0  # failing for others right now: one attempt, then the fallback
        if self.deadline is not None:
            budget = min(budget, self.deadline - asyncio.get_running_loop().time())
        retrying = AsyncRetrying(
            retry=retry_if_exception(is_connection_error),
            stop=stop_before_delay(max(budget, 0)),
            wait=wait_random_exponential(multiplier=0.1, max=1.0),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._one()
        except Exception as exc:
            if is_connection_error(exc):
                raise self._unavailable(exc) from exc
            raise
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _one(self) -> T:
        attempt = self.endpoint._run_once(self.operation, self.progress)
        if self.deadline is None:
            return await attempt
        if not self.detach:
            async with asyncio.timeout_at(self.deadline):  # TimeoutError: a connection error
                return await attempt
        endpoint = self.endpoint
        if endpoint.detached >= endpoint.max_detached:
            attempt.close()  # never started: nothing sent
            raise DatabaseUnavailable(endpoint.name, TimeoutError("too many writes outlived "
                                      "their deadline"), may_have_applied=self.progress.started)
        task = asyncio.ensure_future(attempt)
        try:
            async with asyncio.timeout_at(self.deadline):
                return await asyncio.shield(task)
        except TimeoutError as exc:
            if not self.progress.started:
                # Still waiting for a connection: nothing was sent, and nothing ever may be,
                # since the caller is about to say so. Stop it before it gets one.
                task.cancel()
                await asyncio.wait({task}, timeout=0.2)
                if not self.progress.started:
                    raise self._unavailable(exc) from None
            endpoint._count_detached(+1)
            bound = asyncio.get_running_loop().call_later(endpoint.detached_bound,
                                                          self._close_if_running, task)
            def ended(done: asyncio.Future[T]) -> None:
                bound.cancel()
                self._late_outcome(done)

            task.add_done_callback(ended)
            raise DatabaseUnavailable(endpoint.name, exc, may_have_applied=True) from None

    def _close_if_running(self, task: asyncio.Future[T]) -> None:
        """Past its bound, a detached write's connection is closed, not cancelled: a cancel
        that lands while the commit waits for the synchronous standby leaves it committed on
        the writer alone; a closed connection frees the slot whatever the peer does (a
        black-holed flow never answers a cancel either). The outcome stays unknown, as the
        caller was told; the order's replay or sweep settles it."""
        if task.done() or self.progress.connection is None:
            return
        log.warning("%s endpoint: a write still running %.0f s past its deadline: closing "
                    "its connection", self.endpoint.name, self.endpoint.detached_bound)
        self.progress.connection.terminate()

    def _late_outcome(self, task: asyncio.Future[T]) -> None:
        """A detached write ended after its caller moved on: say how (nobody else will)."""
        self.endpoint._count_detached(-1)
        if task.cancelled():
            return
        exc = task.exception()
        log.info("%s endpoint: a write finished after its deadline: %s", self.endpoint.name,
                 "ok" if exc is None else f"{type(exc).__name__}: {exc}")


@asynccontextmanager
async def open_endpoint(
    name: str, url: str, settings: Settings, *, migrate: bool, primary: bool = False,
) -> AsyncIterator[Endpoint]:
    """An endpoint for a process's lifetime: its breaker (with degradation on) and the
    breaker's background probe, its pool, and the background task that prepares the schema
    while the process already answers. ``primary``: the writer endpoint."""
    breaker = None
    if settings.enable_degradation:
        # A probe keeps no customer waiting: it may take a whole new connection (TCP, TLS,
        # SCRAM, a password read from its source) and its round trip. Cut shorter, a slow
        # connect after a failover would keep the breaker open with the database up.
        breaker = Breaker(name, settings.breaker_fail_max, settings.breaker_probe_seconds,
                          probe_timeout=settings.db_connect_timeout
                          + settings.fallback_after_seconds)
    endpoint = Endpoint(name, url, settings, breaker, primary=primary)
    await endpoint.open()
    async with AsyncExitStack() as stack:
        stack.push_async_callback(endpoint.close)
        if breaker is not None:
            run_in_background(stack, breaker.keep_probing(endpoint.probe), name=f"probe-{name}")
        run_in_background(stack, prepare_until_ready(
            endpoint, migrate=migrate, max_backoff=settings.migrate_max_backoff_seconds,
        ), name=f"prepare-{name}")
        yield endpoint


# Schema migrations ---------------------------------------------------------------------------


def migration_files() -> list[tuple[str, str]]:
    """The versioned SQL files, in order, as (version, sql)."""
    folder = resources.files("shop") / "migrations"
    files = sorted((p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [(p.name.removesuffix(".sql"), p.read_text()) for p in files]


async def apply_migrations(conn: asyncpg.Connection) -> list[str]:
    """Apply what is missing, in one transaction, under an advisory lock (safe with replicas).

    The lock is transaction-scoped so that it also works through a transaction pooler.
    """
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_ID)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, sql in migration_files():
            if version not in done:
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
                applied.append(version)
    return applied


async def schema_is_current(conn: asyncpg.Connection) -> bool:
    """For read-only endpoints: has the writer's schema reached this node yet?"""
    latest = migration_files()[-1][0]
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    return bool(exists) and bool(
        await conn.fetchval("SELECT 1 FROM schema_migrations WHERE version = $1", latest)
    )


async def prepare_until_ready(endpoint: Endpoint, *, migrate: bool, max_backoff: float) -> None:
    """Background start-up: retry with capped exponential backoff until the schema is in place.

    Never gives up: the lab learned that a one-shot initialisation leaves the app broken
    forever when the database (or the proxy) is not ready when the process starts.
    """
    delay = 0.1
    while True:
        try:
            if migrate:
                applied = await endpoint.run(apply_migrations, wait_ready=False)
                if applied:
                    log.info("%s endpoint: applied migrations %s", endpoint.name, applied)
                endpoint.ready.set()
                return
            if await endpoint.run(schema_is_current, wait_ready=False):
                endpoint.ready.set()
                return
            log.info("%s endpoint: schema not there yet", endpoint.name)
        except Exception as exc:  # keep trying whatever went wrong, and say what it was
            log.warning("%s endpoint not ready: %s: %s", endpoint.name, type(exc).__name__, exc)
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_backoff)


async def reset_catalog(conn: asyncpg.Connection) -> None:
    """Back to the seeded catalog with no orders (the lab's reset, the tests' clean slate)."""
    seed = dict(migration_files())["0002_seed"]
    async with conn.transaction():
        await conn.execute("DELETE FROM orders")
        await conn.execute("DELETE FROM products")
        await conn.execute(seed)
