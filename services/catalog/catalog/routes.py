"""Product routes. SQL first: each query is written out where it is used."""

from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Path

from shop.errors import ProductNotFound
from shop.web import SERVED_BY, EndpointDep

router = APIRouter(prefix="/products", tags=["products"])

ProductId = Annotated[int, Path(ge=1, le=2**31 - 1)]
PRODUCT_COLUMNS = "id, name, price::float8 AS price, stock"


async def select_products(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(f"SELECT {PRODUCT_COLUMNS} FROM products ORDER BY id")
    return [dict(row) for row in rows]


@router.get("")
async def list_products(reader: EndpointDep) -> dict[str, Any]:
    products, latency_ms = await reader.timed(select_products)
    return {
        "products": products,
        "count": len(products),
        "source": "database",
        "served_by": SERVED_BY,
        "db_latency_ms": latency_ms,
    }


@router.get("/{product_id}")
async def get_product(product_id: ProductId, reader: EndpointDep) -> dict[str, Any]:
    async def select_product(conn: asyncpg.Connection) -> dict[str, Any]:
        row = await conn.fetchrow(f"SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1",
                                  product_id)
        if row is None:
            raise ProductNotFound()
        return dict(row)

    product, latency_ms = await reader.timed(select_product)
    return {**product, "source": "database", "served_by": SERVED_BY,
            "db_latency_ms": latency_ms}
