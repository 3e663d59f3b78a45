"""Order routes: thin. The transaction itself is shop.orders.place_order, grouped with the
process's concurrent orders for the same product (shop.orders.GroupCommit); when the writer
is out the order goes to the SQS buffer and the customer gets 202 with an id to look up.

Every answer is true: 201 is committed; 202 is on the queue, or may already be in the
database or on the queue and is held by the outbox until the queue surely has it; 4xx and
503 mean nothing will happen. All of it within the request's deadline.
"""

import uuid
from dataclasses import asdict
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from shop.aws import (
    AWS_ERRORS,
    MAX_IDEMPOTENCY_KEY,
    MAX_PRODUCT_ID,
    MAX_QUANTITY,
    EnqueueUnknown,
    NotSent,
    OrderBuffer,
    QueuedOrder,
)
from shop.errors import (
    DatabaseNotReady,
    DatabaseUnavailable,
    FallbackUnavailable,
    IdempotencyKeyReused,
    OrderNotFound,
)
from shop.metrics import FALLBACKS
from shop.orders import GroupCommit, Order, fetch_order, order_id_for, raise_for_rejection
from shop.schemas import OrderAccepted, OrderPublic, Source, errors
from shop.web import SERVED_BY, DeadlineDep, EndpointDep, database_deadline

router = APIRouter(prefix="/orders", tags=["orders"])
DB_OUT = (DatabaseUnavailable, DatabaseNotReady)


class OrderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    product_id: int = Field(ge=1, le=MAX_PRODUCT_ID)
    quantity: int = Field(ge=1, le=MAX_QUANTITY)


async def group_commit(request: Request) -> GroupCommit:
    orders: GroupCommit = request.app.state.group_commit
    return orders


GroupCommitDep = Annotated[GroupCommit, Depends(group_commit)]


async def order_buffer(request: Request) -> OrderBuffer | None:
    buffer: OrderBuffer | None = request.app.state.buffer
    return buffer


BufferDep = Annotated[OrderBuffer | None, Depends(order_buffer)]
IdempotencyKey = Annotated[str | None, Header(min_length=1, max_length=MAX_IDEMPOTENCY_KEY)]


def public(order: Order, source: Source, **extra: Any) -> OrderPublic:
    return OrderPublic(**asdict(order), source=source, served_by=SERVED_BY, **extra)


@router.post("", status_code=201, response_model=OrderPublic, response_model_exclude_none=True,
             responses={202: {"model": OrderAccepted,
                              "description": "pending: queued, or held until it surely is"},
                        **errors(404, 409, 413, 422, 503)})
async def create_order(
    order: OrderCreate, orders: GroupCommitDep, buffer: BufferDep, deadline: DeadlineDep,
    idempotency_key: IdempotencyKey = None,
) -> OrderPublic | JSONResponse:
    # Made before the first attempt: retries, the queued copy and repeats all reuse it.
    request = QueuedOrder(order_id_for(idempotency_key, order.product_id, order.quantity),
                          order.product_id, order.quantity, idempotency_key)

    try:
        # Placed together with this process's other orders for the product (group commit).
        placed, latency_ms = await orders.place(
            request, deadline=database_deadline(deadline, buffer is not None))
    except DB_OUT as exc:
        if buffer is None:
            raise
        may_exist = isinstance(exc, DatabaseUnavailable) and exc.may_have_applied
        return await queue_order(buffer, request, deadline, may_exist)
    return public(raise_for_rejection(placed), "database", db_latency_ms=latency_ms)


async def queue_order(buffer: OrderBuffer, request: QueuedOrder, deadline: float,
                      may_exist: bool) -> JSONResponse:
    """The writer is out. ``may_exist``: an attempt may have committed (its outcome is
    unknown); the same id on the queue is then replayed by the worker, not applied twice."""
    if buffer.outbox.full() and not may_exist:
        raise FallbackUnavailable("database unavailable, order queue backed up")
    source: Source = "queue"
    try:
        await buffer.enqueue(request, deadline)
    except (EnqueueUnknown, FallbackUnavailable, IdempotencyKeyReused) as exc:
        # Not surely on the queue. A refusal (503, or 422 for a reused key) is only true when
        # nothing can have happened; otherwise the answer is 202 and the outbox sends the
        # order until the queue surely has it (the worker then decides a reused key, by the
        # database's unique key, under this order's own id).
        if not isinstance(exc, EnqueueUnknown) and not may_exist:
            raise
        buffer.outbox.hold(request)
        source = "outbox"
    FALLBACKS.labels(kind=f"order_{'queued' if source == 'queue' else 'held'}").inc()
    accepted = OrderAccepted(order_id=request.order_id, status="pending",
                             product_id=request.product_id, quantity=request.quantity,
                             source=source, served_by=SERVED_BY)
    return JSONResponse(accepted.model_dump(mode="json"), status_code=202)


@router.get("/{order_id}", response_model=OrderPublic, response_model_exclude_none=True,
            responses=errors(404, 422, 503))
async def get_order(order_id: uuid.UUID, writer: EndpointDep, buffer: BufferDep,
                    deadline: DeadlineDep) -> OrderPublic:
    async def select(conn: asyncpg.Connection) -> Order:
        found = await fetch_order(conn, order_id)
        if found is None:
            raise OrderNotFound()
        return found

    database_out: Exception | None = None
    try:
        found, latency_ms = await writer.timed(
            select, deadline=database_deadline(deadline, buffer is not None))
        return public(found, "database", db_latency_ms=latency_ms)
    except (*DB_OUT, OrderNotFound) as exc:
        # Not in the database (yet), or the database is out: a buffered order's status.
        if buffer is None:
            raise
        if isinstance(exc, DB_OUT):
            database_out = exc
    try:
        buffered = await buffer.status(order_id, deadline)
    except (*AWS_ERRORS, NotSent) as exc:
        raise FallbackUnavailable("database unavailable, order status unreachable") from exc
    if buffered is None:
        # 404 only when the database said so: with it out, an order placed directly (201)
        # has no buffered status, and "not found" would be a lie.
        raise database_out or OrderNotFound()
    return public(buffered, "queue")
