"""What both HTTP services share: the app factory, the ONE place domain errors become HTTP
answers, health routes, request metrics and the request-body limit."""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shop.admission import AdaptiveLimit
from shop.db import Endpoint
from shop.errors import Overloaded, ShopError
from shop.metrics import IN_FLIGHT, REQUEST_SECONDS, REQUESTS, SHED
from shop.schemas import DeepHealth, ErrorBody, Health
from shop.settings import Settings, get_settings

log = logging.getLogger(__name__)

# Which process answered, as every database answer names it: a random id of this process, not
# its host name (on Fargate the host name can be the task's private IP) nor anything derived
# from it (a hash of host and pid is reversed by trying the subnet's addresses). The process
# logs the pairing once at start, for its operators.
SERVED_BY = secrets.token_hex(4)
MAX_BODY_BYTES = 16 * 1024


def error(status_code: int, message: str, headers: dict[str, str] | None = None,
          detail: list[dict[str, Any]] | None = None,
          extra: dict[str, Any] | None = None) -> JSONResponse:
    """The one error envelope (``shop.schemas.ErrorBody``); ``detail`` only for a 422,
    ``extra`` for the fields an error adds (``OutcomeUnknownBody``)."""
    body = ErrorBody(error=message, detail=detail).model_dump(exclude_none=True)
    return JSONResponse({**body, **(extra or {})}, status_code=status_code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ShopError)
    async def shop_error(request: Request, exc: ShopError) -> JSONResponse:
        # Shed requests are counted (shop_requests_shed_total), not logged: a line each
        # would be the costliest part of refusing them, under a surge.
        if exc.status_code >= 500 and not isinstance(exc, Overloaded):
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        return error(exc.status_code, exc.message, headers=exc.response_headers(),
                     extra=exc.extra())

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, "invalid request", detail=jsonable_encoder(exc.errors()))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed: %s: %s", request.method, request.url.path,
                  type(exc).__name__, exc, exc_info=exc)
        return error(500, "internal server error")


class RequestGuard:
    """Pure ASGI middleware, in front of everything: admission (past the process's adaptive
    limit, ``app.state.admission``, or once a request has queued longer than
    ``SHOP_MAX_QUEUE_SECONDS`` before reaching it: a 503 with Retry-After at once, before any
    work is spent on it, so that an overload queues nowhere), oversized bodies refused (413),
    and the request metrics. Health checks and metrics are never shed: an orchestrator must
    not take a busy process for a dead one.

    A request's clock starts when it reached the load balancer where that one says so
    (``X-Request-Start: t=<seconds>``, as nginx sets it from ``$msec``), else when it reaches
    this process: its deadline (``request_deadline``) counts the time it queued before."""

    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body = max_body
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        if scope["path"].startswith(NEVER_SHED):
            await self._guarded(scope, receive, send, started)
            return
        settings = get_settings()
        queued = queued_seconds(scope)
        limit: AdaptiveLimit | None = getattr(scope["app"].state, "admission", None)
        if queued > settings.max_queue_seconds or not (
                limit.admits(self.in_flight) if limit is not None
                else self.in_flight < settings.max_concurrent_requests):
            SHED.labels(why="queued" if queued > settings.max_queue_seconds else "limit").inc()
            await send(SHED_START)
            await send(SHED_BODY)
            self._record(scope, Overloaded.status_code, started)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            await error(413, "request body too large")(scope, receive, send)
            self._record(scope, 413, started)
            return
        # The request's deadline counts from its arrival (request_deadline).
        scope.setdefault("state", {})["arrived"] = \
            asyncio.get_running_loop().time() - queued
        self.in_flight += 1
        IN_FLIGHT.set(self.in_flight)
        try:
            await self._guarded(scope, receive, send, started)
        finally:
            self.in_flight -= 1
            IN_FLIGHT.set(self.in_flight)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send,
                       started: float) -> None:
        status = 500
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body:
                raise StarletteHTTPException(413, "request body too large")
            return message

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_and_record)
        finally:
            self._record(scope, status, started)

    @staticmethod
    def _record(scope: Scope, status: int, started: float) -> None:
        route = getattr(scope.get("route"), "path", "unmatched")
        method = scope["method"] if scope["method"] in METHODS else "OTHER"
        count, seconds = _request_metrics(route, method, status)
        count.inc()
        seconds.observe(time.perf_counter() - started)


NEVER_SHED = ("/health", "/metrics")
# The one shed answer, made once: shedding must cost as little as possible.
_SHED = json.dumps({"error": Overloaded.message}).encode()
SHED_START: Message = {"type": "http.response.start", "status": Overloaded.status_code,
                       "headers": [(b"content-type", b"application/json"),
                                   (b"content-length", str(len(_SHED)).encode()),
                                   (b"retry-after", b"1")]}
SHED_BODY: Message = {"type": "http.response.body", "body": _SHED}


def queued_seconds(scope: Scope) -> float:
    """How long the request waited before it reached this process, from the load balancer's
    ``X-Request-Start: t=<epoch seconds>`` (nginx's ``$msec``); 0 without one. A value off by
    more than a minute either way is a clock or a client, not a queue: ignored."""
    for name, value in scope["headers"]:
        if name == b"x-request-start":
            try:
                waited = time.time() - float(value.decode().removeprefix("t="))
            except ValueError:
                return 0.0
            return waited if 0 < waited < 60 else 0.0
    return 0.0
# Labels are bounded: a client's made-up method is "OTHER", an unknown path "unmatched".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@functools.cache
def _request_metrics(route: str, method: str, status: int) -> tuple[Counter, Histogram]:
    """The labelled children, looked up once per route, method and status (``labels()`` was a
    tenth of a cached read's CPU)."""
    return (REQUESTS.labels(route=route, method=method, status=str(status)),
            REQUEST_SECONDS.labels(route=route, method=method))


def admission(settings: Settings) -> AdaptiveLimit | None:
    """The process's adaptive admission limit (shop.admission); None: the static ceiling."""
    if settings.admission == "static":
        return None
    return AdaptiveLimit(target=settings.admission_target_ms / 1000,
                         max_limit=settings.max_concurrent_requests,
                         min_limit=min(8, settings.max_concurrent_requests))


def create_app(
    title: str,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    routers: list[APIRouter],
    middleware: Sequence[Callable[[ASGIApp], ASGIApp]] = (),
) -> FastAPI:
    """``middleware``: the service's own pure ASGI middleware, innermost first; all of it runs
    inside ``RequestGuard`` (body limit, metrics)."""
    otel = Settings().opentelemetry  # read when the app is built: FastAPI takes it here

    @asynccontextmanager
    async def started_then_frozen(app: FastAPI) -> AsyncIterator[None]:
        log.info("%s answers as served_by=%s (host %s, pid %d)", title, SERVED_BY,
                 socket.gethostname(), os.getpid())
        app.state.admission = admission(get_settings())
        async with lifespan(app):
            # The limit follows the database's latency: what it protects (the latency of
            # the whole request would also count what shedding itself costs the event loop,
            # and cutting the limit cannot cure that).
            endpoint = getattr(app.state, "endpoint", None)
            if endpoint is not None and app.state.admission is not None:
                endpoint.latency_observer = app.state.admission.observe
            # What start-up made (modules, the app, pools, clients) lives as long as the
            # process: out of the collector's sight, a full collection no longer walks it.
            # Under load those walks were the orders' p99 (50-270 ms each, BENCHMARKS.md).
            gc.collect()  # start-up's garbage goes now, not frozen with the rest
            gc.freeze()
            yield

    app = FastAPI(title=title, lifespan=started_then_frozen,
                  telemetry={"tracing": otel, "metrics": otel, "logs": otel})
    install_error_handlers(app)
    for cls in middleware:
        app.add_middleware(cls)
    app.add_middleware(RequestGuard)
    app.include_router(health_router(title))
    for router in routers:
        app.include_router(router)
    return app


# Health -------------------------------------------------------------------------------------


async def main_endpoint(request: Request) -> Endpoint:
    # async on purpose, as every dependency here: FastAPI runs a plain ``def`` dependency in
    # its thread pool, a thread hop per request (the costliest line of the catalog's profile).
    endpoint: Endpoint = request.app.state.endpoint
    return endpoint


EndpointDep = Annotated[Endpoint, Depends(main_endpoint)]


async def request_deadline(request: Request) -> float:
    """When this request must be answered by (the event loop's clock), counted from its
    arrival (``RequestGuard``: at the load balancer, where it says so): every database and AWS
    call of the request runs under it, so the customer gets an answer, not a hang."""
    arrived = getattr(request.state, "arrived", None)
    if arrived is None:
        arrived = asyncio.get_running_loop().time()
    return float(arrived) + get_settings().request_budget_seconds


DeadlineDep = Annotated[float, Depends(request_deadline)]


def database_deadline(deadline: float, has_fallback: bool) -> float:
    """How long a request waits for the database. With a fallback (the catalog copy, the
    order queue) no more than ``SHOP_FALLBACK_AFTER_SECONDS``, and never into the time the
    fallback needs (``SHOP_AWS_TIMEOUT`` before the request's deadline): a slow or unreachable
    database costs the customer that much at most, and the breaker, told each such call
    failed, soon sends everyone to the fallback at once. Without one, the whole budget."""
    if not has_fallback:
        return deadline
    settings = get_settings()
    now = asyncio.get_running_loop().time()
    return min(deadline - settings.aws_timeout, now + settings.fallback_after_seconds)


def health_router(service: str) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/health", response_model=Health,
                responses={503: {"model": Health, "description": "the worker's loop stalled"}})
    async def health(request: Request) -> JSONResponse:
        """Liveness: answers at once and never touches the database. A process with a loop
        of its own (the worker) sets ``app.state.alive`` to say whether the loop still turns."""
        alive = getattr(request.app.state, "alive", None)
        if alive is not None and not alive():
            return JSONResponse({"status": "stalled", "service": service}, status_code=503)
        return JSONResponse({"status": "ok", "service": service})

    @router.get("/health/deep", response_model=DeepHealth,
                responses={503: {"model": DeepHealth, "description": "not ready to serve"}})
    async def health_deep(request: Request, endpoint: EndpointDep) -> JSONResponse:
        """Readiness: one direct round trip to the database (no retry, no breaker), the
        breaker's state, and the writes stuck past their deadline (every slot for them taken:
        the process takes no writes until one ends, so it is not ready)."""
        extra = await deep_health_extras(request)
        if endpoint.breaker is not None:
            extra["breaker"] = endpoint.breaker.state
        extra["stuck_writes"] = endpoint.detached
        try:
            latency_ms = await endpoint.ping()
        except Exception as exc:
            return JSONResponse(
                {"status": "unhealthy", "database": "error",
                 "error": f"{type(exc).__name__}: {exc}".strip(), "served_by": SERVED_BY,
                 **extra},
                status_code=503,
            )
        problem = None
        if not endpoint.ready.is_set():
            # Connected, but the schema is not in place (e.g. the writer endpoint leads to a
            # read-only standby, where migrations cannot run): not ready to serve.
            problem = "schema not ready"
        elif endpoint.writes_stuck:
            problem = f"{endpoint.detached} writes stuck past their deadline"
        if problem is not None:
            return JSONResponse(
                {"status": "unhealthy", "database": "connected", "latency_ms": latency_ms,
                 "schema_ready": endpoint.ready.is_set(), "error": problem,
                 "served_by": SERVED_BY, **extra},
                status_code=503,
            )
        return JSONResponse(
            {"status": "healthy", "database": "connected", "latency_ms": latency_ms,
             "schema_ready": True, "served_by": SERVED_BY, **extra}
        )

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


async def deep_health_extras(request: Request) -> dict[str, Any]:
    """Each service may add what its deep health should show (AWS resources)."""
    hook = getattr(request.app.state, "health_extras", None)
    return await hook() if hook is not None else {}

