"""Domain exceptions. Each service maps them to HTTP answers in one place (shop.web)."""

from __future__ import annotations


class ShopError(Exception):
    """Base of the exceptions the HTTP layer knows how to answer."""

    status_code = 500
    message = "internal server error"

    def __str__(self) -> str:
        return self.message


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


class DatabaseNotReady(ShopError):
    """The schema is not in place yet (background migrations still retrying)."""

    status_code = 503
    message = "database not ready"


class DatabaseUnavailable(ShopError):
    """The endpoint could not be reached within the retry budget, or its breaker is open."""

    status_code = 503
    message = "database unavailable"

    def __init__(self, endpoint: str, cause: BaseException | None = None) -> None:
        super().__init__(endpoint, cause)
        self.endpoint = endpoint
        self.cause = cause


class FallbackUnavailable(ShopError):
    """The database is down and the fallback (cache, queue) cannot answer either."""

    status_code = 503

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
