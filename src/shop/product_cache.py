"""The DynamoDB copy of the catalog, the catalog service's fallback.

``ProductCache`` is written from successful database reads by a background task (never one
write per request), and read when the reader's breaker is open, stale-while-revalidate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from botocore.exceptions import EndpointConnectionError

from shop.aws import AWS_ERRORS, batch_put
from shop.metrics import CACHE_READS, CACHE_REFRESHES

log = logging.getLogger(__name__)


def _public(product: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in product.items() if key != "cached_at"}


class ProductCache:
    """The DynamoDB copy of the catalog: one item per product, hash key ``id`` (Number)."""

    def __init__(self, dynamodb: Any, table: str, refresh_seconds: float,
                 scan_timeout: float = 2.0) -> None:
        self.dynamodb = dynamodb
        self.table = table
        self.refresh_seconds = refresh_seconds
        self.scan_timeout = scan_timeout
        self._latest: dict[int, dict[str, Any]] = {}
        self._dirty = asyncio.Event()
        self._memo: tuple[float, list[dict[str, Any]]] | None = None
        self._scanning: asyncio.Future[None] | None = None

    def offer(self, products: list[dict[str, Any]]) -> None:
        """Called with every successful database read; costs a dict update, no I/O."""
        now = time.time()
        for product in products:
            self._latest[product["id"]] = {**product, "cached_at": now}
        self._dirty.set()

    async def keep_fresh(self) -> None:
        """Background task: write the latest products at most every ``refresh_seconds``."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            snapshot = list(self._latest.values())
            try:
                await self.write(snapshot)
                CACHE_REFRESHES.labels(outcome="ok").inc()
            except AWS_ERRORS as exc:
                CACHE_REFRESHES.labels(outcome="error").inc()
                log.warning("catalog cache refresh failed: %s", exc)
                self._dirty.set()  # try again next round
            await asyncio.sleep(self.refresh_seconds)

    async def write(self, products: list[dict[str, Any]]) -> None:
        now = str(round(time.time(), 3))
        await batch_put(self.dynamodb, self.table, [
            {"id": {"N": str(p["id"])}, "name": {"S": p["name"]},
             "price": {"N": str(p["price"])}, "stock": {"N": str(p["stock"])},
             "cached_at": {"N": str(now)}}
            for p in products
        ])

    async def read_all(self, deadline: float | None = None,
                       ) -> tuple[list[dict[str, Any]], float | None]:
        """All cached products, and the age of the oldest copy in seconds."""
        snapshot = await self._snapshot(deadline)
        if not snapshot:
            return [], None
        oldest = min(p["cached_at"] for p in snapshot)
        return [_public(p) for p in snapshot], round(time.time() - oldest, 1)

    async def _snapshot(self, deadline: float | None) -> list[dict[str, Any]]:
        """The table's copy, scanned at most once a second by one task at a time: while the
        breaker is open every read lands here, and the copy changes only when the database is
        back. Stale-while-revalidate: a caller never waits for a scan when there is a copy to
        answer with (the last scan's, or, before any scan, what this process last read from
        the database); a stale one starts a scan in the background, and its age keeps
        growing in the answers while DynamoDB does not answer. With no copy at all the
        caller waits for the scan, until its deadline; no answer raises."""
        if (memo := self._fresh_memo()) is not None:
            return memo
        if self._scanning is None:
            self._scanning = asyncio.ensure_future(self._rescan())
        copy = self._memo[1] if self._memo is not None else self._from_database()
        if copy:
            return copy
        async with asyncio.timeout_at(deadline):
            await asyncio.shield(self._scanning)
        if self._memo is None:
            raise EndpointConnectionError(endpoint_url=f"dynamodb table {self.table}")
        return self._memo[1]

    def _from_database(self) -> list[dict[str, Any]]:
        return sorted(self._latest.values(), key=lambda p: p["id"])

    async def _rescan(self) -> None:
        try:
            async with asyncio.timeout(self.scan_timeout):
                items = await self._scan()
        except Exception as exc:  # AWS out, or an item this version cannot read
            if self._memo is None and self._latest:
                # Never read the table, but this process read the database: what it read last
                # is a copy too (the database and AWS out together).
                self._memo = (time.monotonic(), self._from_database())
            elif self._memo is not None:
                self._memo = (time.monotonic(), self._memo[1])  # try DynamoDB again in 1 s
            log.warning("catalog cache unreachable (%s): serving the last copy", exc)
            CACHE_READS.labels(outcome="stale").inc()
        else:
            CACHE_READS.labels(outcome="ok").inc()
            self._memo = (time.monotonic(),
                          sorted((self._product(i) for i in items), key=lambda p: p["id"]))
        finally:
            self._scanning = None

    def _fresh_memo(self) -> list[dict[str, Any]] | None:
        if self._memo is not None and time.monotonic() - self._memo[0] <= 1.0:
            return self._memo[1]
        return None

    async def _scan(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": self.table}
        while True:
            page = await self.dynamodb.scan(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    @staticmethod
    def _product(item: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": int(item["id"]["N"]),
            "name": item["name"]["S"],
            "price": float(item["price"]["N"]),
            "stock": int(item["stock"]["N"]),
            "cached_at": float(item["cached_at"]["N"]),
        }

    async def check(self) -> str:
        try:
            await self.dynamodb.describe_table(TableName=self.table)
        except AWS_ERRORS as exc:
            return f"error: {exc}"
        return "ok"
