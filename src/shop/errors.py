"""Domain exceptions. Each service maps them to HTTP answers in one place (shop.web)."""

from __future__ import annotations

import math
import uuid
from typing import Any, ClassVar


class ShopError(Exception):
    """Base of the exceptions the HTTP layer knows how to answer."""

    status_code = 500
    message = "internal server error"
    headers: ClassVar[dict[str, str] | None] = None

    def __str__(self) -> str:
        return self.message

    def extra(self) -> dict[str, Any]:
        """Fields the answer carries beside ``error`` (see ``OutcomeUnknown``)."""
        return {}

    def response_headers(self) -> dict[str, str] | None:
        return self.headers


class BusinessError(ShopError):
    """A correct answer about the shop (unknown product, no stock).

    The database did its job: a circuit breaker counts it neither as a failure nor as a success.
    """


class ProductNotFound(BusinessError):
    status_code = 404
    message = "product not found"


class OrderNotFound(BusinessError):
    status_code = 404
    message = "order not found"


class InsufficientStock(BusinessError):
    status_code = 409
    message = "insufficient stock"


class OrderFailed(BusinessError):
    """A repeat of an order that has failed for good (the worker gave up on it): the
    decision stands, whatever the repeat."""

    status_code = 409

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason)
        self.message = f"order failed: {reason or 'no reason recorded'}"


class IdempotencyKeyReused(BusinessError):
    """The Idempotency-Key names an earlier request with another body (the IETF draft's 422):
    the first order stands, this one is not placed."""

    status_code = 422
    message = "Idempotency-Key already used for a different request"


class DatabaseNotReady(ShopError):
    """The schema is not in place yet (background migrations still retrying)."""

    status_code = 503
    message = "database not ready"
    headers: ClassVar[dict[str, str] | None] = {"Retry-After": "1"}


class DatabaseUnavailable(ShopError):
    """The endpoint could not be reached within the retry budget or the request's deadline, or
    its breaker is open.

    ``may_have_applied``: an attempt got as far as running the operation, so a write may have
    committed (a lost acknowledgement, a deadline passed while it still ran): its outcome is
    unknown, and no answer may say it did not happen.
    """

    status_code = 503
    message = "database unavailable"
    headers: ClassVar[dict[str, str] | None] = {"Retry-After": "1"}

    def __init__(self, endpoint: str, cause: BaseException | None = None, *,
                 may_have_applied: bool = False) -> None:
        super().__init__(endpoint, cause)
        self.endpoint = endpoint
        self.cause = cause
        self.may_have_applied = may_have_applied


class OutcomeUnknown(ShopError):
    """The shop cannot know whether the order was placed: its write may still commit (the
    deadline passed while it ran, its acknowledgement was lost, the store of record did not
    answer in time), or, with an Idempotency-Key, an earlier request with the same key may
    have been accepted and neither store can be asked. Never "nothing happened": a retry with
    the same Idempotency-Key gets the truth, ``GET /orders/{order_id}`` too."""

    status_code = 504
    message = "outcome unknown: retry with the same Idempotency-Key"
    headers: ClassVar[dict[str, str] | None] = {"Retry-After": "1"}

    def __init__(self, order_id: uuid.UUID) -> None:
        super().__init__(order_id)
        self.order_id = order_id

    def extra(self) -> dict[str, Any]:
        return {"order_id": str(self.order_id), "status": "unknown"}


class Unauthorized(ShopError):
    """POST /orders without a valid API key, where the shop requires one."""

    status_code = 401
    message = "a valid API key is required: Authorization: Bearer <key>"
    headers: ClassVar[dict[str, str] | None] = {"WWW-Authenticate": "Bearer"}


class QuotaExceeded(ShopError):
    """A client past its orders per second (``SHOP_CLIENT_ORDERS_PER_SECOND``): nothing was
    done; ``Retry-After`` says when a token is back."""

    status_code = 429
    message = "too many orders from this client, try again shortly"

    def __init__(self, retry_after: float) -> None:
        super().__init__(retry_after)
        self.retry_after = max(1, math.ceil(retry_after))

    def response_headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after)}


class Overloaded(ShopError):
    """More requests in progress than the process takes on: shed at once, never queued; or an
    order that waited its turn for the database past ``SHOP_FALLBACK_AFTER_SECONDS`` while the
    database answered (shop.orders.GroupCommit). Nothing was done."""

    status_code = 503
    message = "overloaded, try again shortly"
    headers: ClassVar[dict[str, str] | None] = {"Retry-After": "1"}


class FallbackUnavailable(ShopError):
    """The database is down and the fallback (cache, queue) cannot answer either."""

    status_code = 503
    headers: ClassVar[dict[str, str] | None] = {"Retry-After": "1"}

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
