"""Locust load for the shop: shoppers who browse the catalog and now and then buy.

Answers are judged as the experiments judge them (loadtest/traffic.py): a 409 (out of stock)
is the shop working, a 202 is an order accepted into the queue (a success, counted as
queued), a timeout, a refused connection or a 5xx is a failure. On quit an SLO gate sets the
exit code: 1 when the failure ratio or the 95th percentile is over its threshold.

    locust -f loadtest/locustfile.py --headless -u 50 -r 10 -t 2m --host http://127.0.0.1:8080
    LOCUST_SHAPE=stages locust -f loadtest/locustfile.py --headless --host ...  # steady/spike
    locust -f loadtest/locustfile.py --slo-fail-ratio 0.05 --slo-p95-ms 500     # web UI :8089

Defaults are in pyproject.toml's [tool.locust]; docs/compose-and-locust.md has the rest
(compose, distributed runs).
"""

from __future__ import annotations

import os
import random
from collections import Counter
from typing import Any

from locust import FastHttpUser, LoadTestShape, between, events, task
from locust.env import Environment
from locust.runners import WorkerRunner

PRODUCT_IDS = range(1, 11)  # the seeded catalog (src/shop/migrations/0002_seed.sql)
# Outcomes that are neither a plain success nor a failure, counted for the summary at quit.
OUTCOMES: Counter[str] = Counter()


class ShopUser(FastHttpUser):
    """What every client of the shop shares: the experiments' timeouts and the judging of
    answers. Personas subclass it with their tasks."""

    abstract = True
    connection_timeout = 2.0
    network_timeout = 5.0  # the shop answers within 5 s or it has failed
    wait_time = between(0.5, 1.5)

    def read(self, path: str, name: str) -> None:
        with self.client.get(path, name=name, catch_response=True) as response:
            if response.status_code == 200:
                response.success()
            else:
                response.failure(_describe(response))

    def order(self, product_id: int, quantity: int) -> None:
        body = {"product_id": product_id, "quantity": quantity}
        with self.client.post("/orders", json=body, name="/orders",
                              catch_response=True) as response:
            status = response.status_code
            if status == 201:
                response.success()
            elif status == 202:  # the writer is out: the order waits in the queue
                OUTCOMES["queued"] += 1
                response.success()
            elif status == 409:  # out of stock: a business answer, the shop is working
                OUTCOMES["out_of_stock"] += 1
                response.success()
            else:
                response.failure(_describe(response))


class Shopper(ShopUser):
    """Browses the catalog and now and then buys: three catalog reads to one order."""

    @task(2)
    def browse(self) -> None:
        self.read("/products", name="/products")

    @task(1)
    def view_product(self) -> None:
        product_id = random.choice(PRODUCT_IDS)
        self.read(f"/products/{product_id}", name="/products/[id]")

    @task(1)
    def buy(self) -> None:
        self.order(random.choice(PRODUCT_IDS), random.randint(1, 3))


def _describe(response: Any) -> str:
    if response.status_code == 0:  # no answer within the timeouts, or no connection
        return f"timeout or connection error: {response.error!r}"
    return f"HTTP {response.status_code}: {(response.text or '')[:200]}"


# Load shape ---------------------------------------------------------------------------------

# (until second, users, spawn rate): a steady load, a spike of five times as many shoppers,
# steady again. LOCUST_STAGES="60:20:5,90:100:50,150:20:50" sets others.
DEFAULT_STAGES = "60:20:5,90:100:50,150:20:50"


def parse_stages(spec: str) -> list[tuple[float, int, float]]:
    stages = []
    for part in spec.split(","):
        until, users, rate = part.split(":")
        stages.append((float(until), int(users), float(rate)))
    if [s[0] for s in stages] != sorted(s[0] for s in stages):
        raise ValueError(f"LOCUST_STAGES must end in increasing seconds: {spec!r}")
    return stages


class StagesShape(LoadTestShape):
    """Steady, spike, steady. A shape in a locustfile takes over from -u/-r/-t, so this one is
    used only when asked for: LOCUST_SHAPE=stages."""

    abstract = os.environ.get("LOCUST_SHAPE", "") != "stages"
    stages = parse_stages(os.environ.get("LOCUST_STAGES", DEFAULT_STAGES))

    def tick(self) -> tuple[int, float] | None:
        run_time = self.get_run_time()
        for until, users, rate in self.stages:
            if run_time < until:
                return users, rate
        return None


# SLO gate -----------------------------------------------------------------------------------


@events.init_command_line_parser.add_listener
def _slo_arguments(parser: Any) -> None:
    parser.add_argument("--slo-fail-ratio", type=float, default=0.01,
                        env_var="LOCUST_SLO_FAIL_RATIO",
                        help="exit 1 when failures / requests is over this (default 0.01)")
    parser.add_argument("--slo-p95-ms", type=float, default=1000.0,
                        env_var="LOCUST_SLO_P95_MS",
                        help="exit 1 when the 95th percentile (ms) is over this (default 1000)")


@events.report_to_master.add_listener
def _send_outcomes(client_id: str, data: dict[str, Any]) -> None:
    data["shop_outcomes"] = dict(OUTCOMES)
    OUTCOMES.clear()


@events.worker_report.add_listener
def _add_outcomes(client_id: str, data: dict[str, Any]) -> None:
    OUTCOMES.update(data.get("shop_outcomes", {}))


@events.quitting.add_listener
def slo_gate(environment: Environment, **_: Any) -> None:
    """Judge the whole run where the whole run's stats are (not on a worker)."""
    if isinstance(environment.runner, WorkerRunner):
        return
    options = environment.parsed_options
    max_fail_ratio = getattr(options, "slo_fail_ratio", 0.01)
    max_p95_ms = getattr(options, "slo_p95_ms", 1000.0)
    total = environment.stats.total
    p95 = total.get_response_time_percentile(0.95) or 0.0
    breaches = []
    if total.num_requests == 0:
        breaches.append("no requests were made")
    if total.fail_ratio > max_fail_ratio:
        breaches.append(f"failure ratio {total.fail_ratio:.2%} > {max_fail_ratio:.2%}")
    if p95 > max_p95_ms:
        breaches.append(f"p95 {p95:.0f} ms > {max_p95_ms:g} ms")
    print(f"SHOP outcomes: requests={total.num_requests} failures={total.num_failures} "
          f"orders_queued={OUTCOMES['queued']} orders_out_of_stock={OUTCOMES['out_of_stock']}")
    if breaches:
        print(f"SLO FAILED: {'; '.join(breaches)}")
        environment.process_exit_code = 1
    else:
        print(f"SLO passed: failure ratio {total.fail_ratio:.2%} <= {max_fail_ratio:.2%}, "
              f"p95 {p95:.0f} ms <= {max_p95_ms:g} ms")
        environment.process_exit_code = 0
