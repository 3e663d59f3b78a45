"""The shop's AWS plumbing (aioboto3): clients for a process's lifetime, every call bounded.

What the shop keeps on AWS lives in modules of their own: the catalog copy
(``shop.product_cache``), the orders accepted while the database is out
(``shop.order_records``, the store of record) and the queue that wakes the worker
(``shop.order_queue``). The services never create these resources; a missing one shows in
/health/deep and the logs.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from typing import Any

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from shop.breaker import Breaker
from shop.settings import Settings

log = logging.getLogger(__name__)

AWS_ERRORS = (BotoCoreError, ClientError, OSError, asyncio.TimeoutError)
# Connections a client keeps; a request's AWS calls never have more in flight than this, so
# a call that got a slot is on the wire (see AwsCalls).
POOL_CONNECTIONS = 10


def client_config(settings: Settings, long_poll_seconds: float = 0,
                  attempts: int = 2) -> AioConfig:
    """Every AWS call is bounded: connect and read timeouts, one retry at most (the
    Builders' Library rule: retry at one layer only, and the caller already has a fallback).
    A client that long-polls waits that long on top of the read timeout."""
    return AioConfig(
        connect_timeout=settings.aws_timeout,
        read_timeout=settings.aws_timeout + long_poll_seconds,
        retries={"max_attempts": attempts, "mode": "standard"},
        max_pool_connections=POOL_CONNECTIONS,
    )


async def open_clients(stack: AsyncExitStack, settings: Settings, *names: str,
                       long_poll_seconds: float = 0, attempts: int = 2) -> list[Any]:
    """aioboto3 clients for the process's lifetime (closed with ``stack``)."""
    session = aioboto3.Session()
    config = client_config(settings, long_poll_seconds, attempts)
    return [await stack.enter_async_context(session.client(name, config=config))
            for name in names]


class NotSent(Exception):
    """No slot for the call before the deadline: it never left this process."""


class AwsCalls:
    """One client's calls under a caller's deadline, so that a failure tells whether the
    request may have reached AWS: an order may only be refused (503) when it did not.

    aiobotocore bounds connecting and reading, not the wait for one of its pooled
    connections: with AWS hung, calls queued there without limit. Here at most
    ``POOL_CONNECTIONS`` calls are in flight; one that cannot get a slot by the deadline
    raises ``NotSent``, one that got a slot runs under ``asyncio.timeout_at(deadline)``.
    Use it with a client made with ``attempts=1``: a retry inside botocore would hide that an
    earlier attempt was sent.
    """

    def __init__(self, client: Any, breaker: Breaker | None = None,
                 call_timeout: float | None = None) -> None:
        self.client = client
        self.breaker = breaker
        self.call_timeout = call_timeout
        self._slots = asyncio.Semaphore(POOL_CONNECTIONS)

    async def __call__(self, method: str, deadline: float | None, **kwargs: Any) -> Any:
        """With a ``deadline`` (a customer's request) the call also stops after
        ``call_timeout``. With a ``breaker``: refused at once (``NotSent``) while it is open;
        a call that fails for any reason but a 4xx answer counts against it."""
        breaker = self.breaker
        if breaker is not None and not breaker.closed:
            raise NotSent(f"{method}: the {breaker.name} breaker is open")
        try:
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        except TimeoutError as exc:
            raise NotSent(f"{method}: no connection free before the deadline") from exc
        if deadline is not None and self.call_timeout is not None:
            deadline = min(deadline, asyncio.get_running_loop().time() + self.call_timeout)
        try:
            async with asyncio.timeout_at(deadline):
                result = await getattr(self.client, method)(**kwargs)
        except Exception as exc:
            if breaker is not None and not _refused(exc):
                await breaker.failed(exc)
            raise
        finally:
            self._slots.release()
        if breaker is not None:
            await breaker.succeeded()
        return result


def _refused(exc: BaseException) -> bool:
    """AWS answered with a 4xx: it is up, the request was refused."""
    return isinstance(exc, ClientError) and \
        int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)) < 500


def may_have_arrived(exc: BaseException) -> bool:
    """Could the call that raised ``exc`` have been carried out by AWS? Only not sent (no
    slot, an open breaker), no connection, or an answer of 4xx (refused) say surely not."""
    if isinstance(exc, NotSent | EndpointConnectionError):  # ConnectTimeoutError is one too
        return False
    return not _refused(exc)


class UnprocessedWrites(BotoCoreError):  # type: ignore[misc]
    fmt = "DynamoDB left {count} writes to {table} unprocessed"


async def batch_put(dynamodb: Any, table: str, items: list[dict[str, Any]],
                    attempts: int = 4) -> None:
    """Put ``items``, 25 to a BatchWriteItem call (its limit). What DynamoDB leaves unprocessed
    (throttling) is sent again after a short backoff; still unprocessed after ``attempts``
    calls is an error (``UnprocessedWrites``, one of ``AWS_ERRORS``)."""
    for start in range(0, len(items), 25):
        pending = {table: [{"PutRequest": {"Item": item}} for item in items[start:start + 25]]}
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(0.05 * 2 ** attempt)
            response = await dynamodb.batch_write_item(RequestItems=pending)
            pending = response.get("UnprocessedItems") or {}
            if not pending:
                break
        else:
            raise UnprocessedWrites(count=len(pending[table]), table=table)
