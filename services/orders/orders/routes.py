"""Order routes: thin. The transaction itself is shop.orders.place_order; when the writer is
out the order goes to the SQS buffer and the customer gets 202 with an id to look up."""

import uuid
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from shop.aws import AWS_ERRORS, MAX_PRODUCT_ID, MAX_QUANTITY, OrderBuffer, QueuedOrder
from shop.errors import DatabaseNotReady, DatabaseUnavailable, FallbackUnavailable, OrderNotFound
from shop.metrics import FALLBACKS
from shop.orders import Order, fetch_order, order_id_for, place_order, raise_for_rejection
from shop.web import SERVED_BY, EndpointDep

router = APIRouter(prefix="/orders", tags=["orders"])
DB_OUT = (DatabaseUnavailable, DatabaseNotReady)


class OrderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    product_id: int = Field(ge=1, le=MAX_PRODUCT_ID)
    quantity: int = Field(ge=1, le=MAX_QUANTITY)


async def order_buffer(request: Request) -> OrderBuffer | None:
    buffer: OrderBuffer | None = request.app.state.buffer
    return buffer


BufferDep = Annotated[OrderBuffer | None, Depends(order_buffer)]
IdempotencyKey = Annotated[str | None, Header(min_length=1, max_length=200)]


@router.post("", status_code=201)
async def create_order(
    order: OrderCreate, writer: EndpointDep, buffer: BufferDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    order_id = order_id_for(idempotency_key)  # before the first attempt: retries reuse it

    async def transaction(conn: asyncpg.Connection) -> Order:
        placed = await place_order(conn, order_id, order.product_id, order.quantity)
        return raise_for_rejection(placed)

    try:
        placed, latency_ms = await writer.timed(transaction)
    except DB_OUT:
        if buffer is None:
            raise
        # The outcome of an attempt that failed mid-way is unknown, but the id is the same:
        # the worker's place_order replays the order if it did commit.
        await buffer.enqueue(QueuedOrder(order_id, order.product_id, order.quantity))
        FALLBACKS.labels(kind="order_queued").inc()
        return JSONResponse(
            {"order_id": str(order_id), "status": "pending", "product_id": order.product_id,
             "quantity": order.quantity, "source": "queue", "served_by": SERVED_BY},
            status_code=202,
        )
    return JSONResponse(
        {**placed.public(), "source": "database", "served_by": SERVED_BY,
         "db_latency_ms": latency_ms},
        status_code=201,
    )


@router.get("/{order_id}")
async def get_order(order_id: uuid.UUID, writer: EndpointDep,
                    buffer: BufferDep) -> dict[str, Any]:
    async def select(conn: asyncpg.Connection) -> Order:
        found = await fetch_order(conn, order_id)
        if found is None:
            raise OrderNotFound()
        return found

    database_out: Exception | None = None
    try:
        found, latency_ms = await writer.timed(select)
        return {**found.public(), "source": "database", "served_by": SERVED_BY,
                "db_latency_ms": latency_ms}
    except (*DB_OUT, OrderNotFound) as exc:
        # Not in the database (yet), or the database is out: a buffered order's status.
        if buffer is None:
            raise
        if isinstance(exc, DB_OUT):
            database_out = exc
    try:
        buffered = await buffer.status(order_id)
    except AWS_ERRORS as exc:
        raise FallbackUnavailable("database unavailable, order status unreachable") from exc
    if buffered is None:
        # 404 only when the database said so: with it out, an order placed directly (201)
        # has no buffered status, and "not found" would be a lie.
        raise database_out or OrderNotFound()
    return {**buffered.public(), "source": "queue", "served_by": SERVED_BY}
