"""Order routes: thin; the transaction itself is shop.orders.place_order."""

import uuid
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from shop.errors import OrderNotFound
from shop.orders import fetch_order, order_id_for, place_order, raise_for_rejection
from shop.web import SERVED_BY, EndpointDep

router = APIRouter(prefix="/orders", tags=["orders"])


class OrderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    product_id: int = Field(ge=1, le=2**31 - 1)
    quantity: int = Field(ge=1, le=100)


IdempotencyKey = Annotated[str | None, Header(min_length=1, max_length=200)]


@router.post("", status_code=201)
async def create_order(
    order: OrderCreate, writer: EndpointDep, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    order_id = order_id_for(idempotency_key)  # before the first attempt: retries reuse it

    async def transaction(conn: asyncpg.Connection) -> Any:
        placed = await place_order(conn, order_id, order.product_id, order.quantity)
        return raise_for_rejection(placed)

    placed, latency_ms = await writer.timed(transaction)
    return JSONResponse(
        {**placed.public(), "served_by": SERVED_BY, "db_latency_ms": latency_ms},
        status_code=201,
    )


@router.get("/{order_id}")
async def get_order(order_id: uuid.UUID, writer: EndpointDep) -> dict[str, Any]:
    async def select(conn: asyncpg.Connection) -> Any:
        found = await fetch_order(conn, order_id)
        if found is None:
            raise OrderNotFound()
        return found

    found, latency_ms = await writer.timed(select)
    return {**found.public(), "source": "database", "served_by": SERVED_BY,
            "db_latency_ms": latency_ms}
