"""The HTTP contract: the shape of every answer, shared by the services and published in their
OpenAPI documents (``/openapi.json``), so that clients can be generated from them and a
contract test can hold the services to them. One error envelope for every error.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from shop.orders import OrderStatus

# Where an answer came from: every fallback says so. "queue": the order table of the orders
# accepted while the database was out (shop.order_records), which the worker drains.
Source = Literal["database", "cache", "queue"]
CatalogSource = Literal["database", "cache"]


class ErrorBody(BaseModel):
    """Every error: 4xx and 5xx alike."""

    error: str
    # 422 for a malformed request only: what was wrong, field by field (FastAPI's details).
    detail: list[dict[str, Any]] | None = None


class Product(BaseModel):
    id: int
    name: str
    price: float
    stock: int


class ProductPublic(Product):
    source: CatalogSource
    served_by: str
    db_latency_ms: float | None = None
    cache_age_seconds: float | None = None  # with "source": "cache": how old the copy is


class ProductList(BaseModel):
    products: list[Product]
    count: int
    source: CatalogSource
    served_by: str
    db_latency_ms: float | None = None
    cache_age_seconds: float | None = None


class OrderPublic(BaseModel):
    """An order as the database (or, while it is out, the order-status table) knows it."""

    order_id: uuid.UUID
    product_id: int
    quantity: int
    status: OrderStatus
    reason: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    source: Source
    served_by: str
    db_latency_ms: float | None = None


class OrderAccepted(BaseModel):
    """202: the order is accepted and pending: durably written in the order table, it
    reaches a final state (confirmed, rejected or failed) that every replica answers and that
    never changes; ``GET /orders/{order_id}`` tells which."""

    order_id: uuid.UUID
    status: Literal["pending"]
    product_id: int
    quantity: int
    source: Literal["queue"]
    served_by: str


class OutcomeUnknownBody(ErrorBody):
    """504: the shop cannot know whether the order was placed (see ``ERROR_MEANINGS``)."""

    order_id: uuid.UUID
    status: Literal["unknown"]


class Health(BaseModel):
    status: Literal["ok", "stalled"]
    service: str


class DeepHealth(BaseModel):
    """Readiness, and what each service adds (breaker state, its AWS resources)."""

    model_config = ConfigDict(extra="allow")

    status: Literal["healthy", "unhealthy"]
    database: Literal["connected", "error"]
    served_by: str
    latency_ms: float | None = None
    schema_ready: bool | None = None
    error: str | None = None
    breaker: Literal["closed", "open", "half-open"] | None = None
    stuck_writes: int | None = None  # writes running past their deadline (see SHOP_DB_*)


ERROR_MEANINGS = {
    401: "an API key is required (SHOP_API_KEY_SECRET is set) and none valid was given",
    404: "unknown product or order",
    409: "insufficient stock, or a repeat of an order that failed for good (with its reason)",
    413: "request body too large",
    422: "malformed request, or an Idempotency-Key already used with another body",
    429: "this client is past its orders per second (SHOP_CLIENT_ORDERS_PER_SECOND): nothing "
         "was done (Retry-After)",
    503: "overloaded, or the database and its fallback both unavailable: this request did "
         "nothing (Retry-After)",
    504: "outcome unknown: the order may or may not have been placed (a write that may still "
         "commit, an order table that did not answer in time, or a keyed order whose earlier "
         "requests could not be looked up); retry with the same Idempotency-Key, or look the "
         "order_id up",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries of a route's error answers, all in the one envelope."""
    return {code: {"model": OutcomeUnknownBody if code == 504 else ErrorBody,
                   "description": ERROR_MEANINGS[code]} for code in codes}
