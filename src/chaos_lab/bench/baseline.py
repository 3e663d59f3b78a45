"""The baseline: the catalog written the way the reference lab wrote its app.

A synchronous Flask app under gunicorn sync workers, one persistent pg8000 connection per
worker, pinged with ``SELECT 1`` before each use and reopened when the ping fails.

    BENCH_DB=host:port:user:database BENCH_DB_PASSWORD_FILE=path \
        gunicorn -w 2 chaos_lab.bench.baseline:app

(the user's password in a file, as the lab keeps it: never in the environment's listing)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pg8000.native
from flask import Flask, jsonify

app = Flask(__name__)
_connection: pg8000.native.Connection | None = None


def connection() -> pg8000.native.Connection:
    global _connection
    if _connection is not None:
        try:
            _connection.run("SELECT 1")
            return _connection
        except Exception:  # the reference's check: any error means a new connection
            _connection = None
    host, port, user, database = os.environ["BENCH_DB"].split(":")
    password = Path(os.environ["BENCH_DB_PASSWORD_FILE"]).read_text().strip()
    _connection = pg8000.native.Connection(user, host=host, port=int(port), database=database,
                                           password=password, timeout=5)
    return _connection


@app.get("/products")
def products() -> Any:
    rows = connection().run("SELECT id, name, price::float8, stock FROM products ORDER BY id")
    items = [{"id": r[0], "name": r[1], "price": r[2], "stock": r[3]} for r in rows]
    return jsonify({"products": items, "count": len(items), "source": "database"})
