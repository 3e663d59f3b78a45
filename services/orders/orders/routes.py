"""Order routes: thin. The transaction itself is shop.orders.place_order, grouped with the
process's concurrent orders for the same product (shop.orders.GroupCommit); when the writer
is out the order goes to the order table, the store of record (orders.fallback), and the
customer gets 202 with an id to look up.

Every answer is true, and says so for the order, not only for the request: 201 is committed;
202 is durably accepted and reaches a final state every replica answers; 4xx and 503 mean
nothing happened; 504 says the outcome is unknown, with the order id, and a retry with the
same Idempotency-Key gets the truth. All of it within the request's deadline.
"""

import uuid
from dataclasses import asdict
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from orders.fallback import OrderFallback, nothing_done
from shop.aws import AWS_ERRORS, NotSent
from shop.clients import ANONYMOUS, Quota, client_of
from shop.errors import (
    DatabaseNotReady,
    DatabaseUnavailable,
    FallbackUnavailable,
    OrderNotFound,
    QuotaExceeded,
)
from shop.metrics import QUOTA_REFUSED
from shop.orders import (
    MAX_IDEMPOTENCY_KEY,
    MAX_PRODUCT_ID,
    MAX_QUANTITY,
    GroupCommit,
    Order,
    OrderRequest,
    answer_for,
    fetch_order,
)
from shop.schemas import OrderAccepted, OrderPublic, Source, errors
from shop.settings import get_settings
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


async def order_fallback(request: Request) -> OrderFallback | None:
    fallback: OrderFallback | None = request.app.state.fallback
    return fallback


FallbackDep = Annotated[OrderFallback | None, Depends(order_fallback)]
IdempotencyKey = Annotated[str | None, Header(min_length=1, max_length=MAX_IDEMPOTENCY_KEY)]
bearer = HTTPBearer(auto_error=False, description=(
    "The client's credential: a signed API key where SHOP_API_KEY_SECRET is set (required "
    "then), else any token; it scopes the Idempotency-Key (shop.clients)."))


async def ordering_client(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
    """Who orders (shop.clients), within their quota of orders per second."""
    settings = get_settings()
    secret = settings.api_key_secret
    client = client_of(credentials.credentials if credentials is not None else None,
                       secret.get_secret_value() if secret is not None else None)
    quota: Quota | None = request.app.state.quota
    # An anonymous client's quota is its address's (the load balancer's X-Forwarded-For,
    # believed from FORWARDED_ALLOW_IPS only): anonymous clients share one key space, not one
    # quota.
    bucket = client if client != ANONYMOUS else f"address:{getattr(request.client, 'host', '')}"
    if quota is not None and (wait := quota.take(bucket)):
        QUOTA_REFUSED.inc()
        raise QuotaExceeded(wait)
    return client


ClientDep = Annotated[str, Depends(ordering_client)]


def public(order: Order, source: Source, **extra: Any) -> OrderPublic:
    return OrderPublic(**asdict(order), source=source, served_by=SERVED_BY, **extra)


@router.post("", status_code=201, response_model=OrderPublic, response_model_exclude_none=True,
             responses={202: {"model": OrderAccepted,
                              "description": "accepted while the database is out: pending, "
                                             "durably recorded, decided later"},
                        **errors(401, 404, 409, 413, 422, 429, 503, 504)})
async def create_order(
    order: OrderCreate, orders: GroupCommitDep, fallback: FallbackDep, deadline: DeadlineDep,
    client: ClientDep, idempotency_key: IdempotencyKey = None,
) -> OrderPublic | JSONResponse:
    # Made before the first attempt: retries, the recorded copy and repeats all reuse its id.
    request = OrderRequest.new(order.product_id, order.quantity, idempotency_key, client)
    try:
        # Placed together with this process's other orders for the product (group commit).
        # While the database answers others, a sent order waits for its own outcome for as
        # long as the fallback could still be reached after (overload is not an outage).
        placed, latency_ms = await orders.place(
            request, deadline=database_deadline(deadline, fallback is not None),
            patience=deadline - get_settings().aws_timeout)
    except DB_OUT as exc:
        may_exist = isinstance(exc, DatabaseUnavailable) and exc.may_have_applied
        if fallback is None:
            if may_exist or request.idempotency_key is not None:
                raise nothing_done(request, may_exist, str(exc)) from exc
            raise  # nothing was sent, and no earlier request can have made this order
        record = await fallback.take(request, deadline, may_exist)
        if record.status != "pending":  # a repeat of an order decided already
            return public(answer_for(record.order()), "queue")
        accepted = OrderAccepted(order_id=request.order_id, status="pending",
                                 product_id=request.product_id, quantity=request.quantity,
                                 source="queue", served_by=SERVED_BY)
        return JSONResponse(accepted.model_dump(mode="json"), status_code=202)
    return public(answer_for(placed), "database", db_latency_ms=latency_ms)


@router.get("/{order_id}", response_model=OrderPublic, response_model_exclude_none=True,
            responses=errors(404, 422, 503))
async def get_order(order_id: uuid.UUID, writer: EndpointDep, fallback: FallbackDep,
                    deadline: DeadlineDep) -> OrderPublic:
    async def select(conn: asyncpg.Connection) -> Order:
        found = await fetch_order(conn, order_id)
        if found is None:
            raise OrderNotFound()
        return found

    database_out: Exception | None = None
    try:
        found, latency_ms = await writer.timed(
            select, deadline=database_deadline(deadline, fallback is not None))
        return public(found, "database", db_latency_ms=latency_ms)
    except (*DB_OUT, OrderNotFound) as exc:
        # Not in the database (yet), or the database is out: the order table's record.
        if fallback is None:
            raise
        if isinstance(exc, DB_OUT):
            database_out = exc
    try:
        record = await fallback.status(order_id, deadline)
    except (*AWS_ERRORS, NotSent) as exc:
        raise FallbackUnavailable("database unavailable, order table unreachable") from exc
    if record is None:
        # 404 only when the database said so: with it out, an order placed directly (201)
        # has no record, and "not found" would be a lie.
        raise database_out or OrderNotFound()
    return public(record.order(), "queue")
