"""The HTTP contract, property-based (schemathesis): requests generated from each service's
published OpenAPI document, valid and invalid, against the running services (uvicorn, real
PostgreSQL, moto's server). Every answer must be no server error, a documented status, and a
body valid against the published schema.

The second half holds the degraded answers to the same contract: the same services with the
database out answer from the cache and the queue.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from chaos_lab.local.aws import ShopResources, create_resources
from chaos_lab.processes import free_port, spawn, stop_process, wait_until

CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]
CHECKS = [not_a_server_error, *CONFORMANCE]
DOWN = "postgresql://shop@127.0.0.1:1/shop"


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _service(module: str, env: dict[str, str], log: Path, ready: str) -> Iterator[str]:
    port = free_port()
    proc = spawn([sys.executable, "-m", "uvicorn", module, "--host", "127.0.0.1", "--port",
                  str(port), "--no-access-log"], log, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _healthy(f"{url}{ready}"), f"{module} on {url}", timeout=30)
        yield url
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def resources(moto_url: str) -> ShopResources:
    return create_resources(moto_url, prefix=f"c{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def env(migrated: str, moto_url: str, resources: ShopResources) -> dict[str, str]:
    return {**resources.settings(moto_url), "SHOP_DATABASE_URL": migrated,
            "SHOP_BREAKER_PROBE_SECONDS": "30"}


@pytest.fixture(scope="module")
def orders_url(env: dict[str, str], work_dir: Path) -> Iterator[str]:
    yield from _service("orders.main:app", env, work_dir / "contract-orders.log",
                        "/health/deep")


@pytest.fixture(scope="module")
def catalog_url(env: dict[str, str], work_dir: Path) -> Iterator[str]:
    yield from _service("catalog.main:app", env, work_dir / "contract-catalog.log",
                        "/health/deep")


def contract(url: str, examples: int, checks: list[Any] = CHECKS) -> int:
    """Generated requests for every operation of the service's published document, each answer
    checked against it; returns how many were made. (Schemathesis's own pytest plugin does not
    load with this pytest: the operations are walked here, with Hypothesis.)"""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    made = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=examples, deadline=None,
                  suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case) -> None:
            nonlocal made
            made += 1
            case.call_and_validate(checks=checks)

        check()
    return made


def test_orders_answers_match_the_contract(orders_url: str) -> None:
    assert contract(orders_url, examples=40) > 40


def test_catalog_answers_match_the_contract(catalog_url: str) -> None:
    assert contract(catalog_url, examples=40) > 40


# Degraded: the database out, the fallbacks answering -------------------------------------


@pytest.fixture(scope="module")
def degraded_orders_url(env: dict[str, str], work_dir: Path) -> Iterator[str]:
    yield from _service("orders.main:app", {**env, "SHOP_DATABASE_URL": DOWN},
                        work_dir / "contract-orders-down.log", "/health")


def test_degraded_orders_answers_match_the_contract(degraded_orders_url: str) -> None:
    """202 pending, the buffered statuses, and 503 where it is the honest answer (the deep
    health check, an order the buffer never saw): all in the published shapes."""
    assert contract(degraded_orders_url, examples=15, checks=CONFORMANCE) > 15


def test_validation_errors_share_the_envelope(orders_url: str) -> None:
    """A 422 is the one error envelope, its details inside it."""
    response = httpx.post(f"{orders_url}/orders", json={"product_id": "two"}, timeout=5)
    body = response.json()
    assert response.status_code == 422
    assert body["error"] == "invalid request" and isinstance(body["detail"], list)
    assert set(body) == {"error", "detail"}
