"""The observability profile (docker-compose.yml, deploy/compose/observability) checked against
the code with no Docker engine: every metric the dashboard queries is one the shop exports, so
a renamed metric breaks this test, not the dashboard on a game day; Prometheus scrapes exactly
the three shop processes where the compose file runs them; Grafana's provisioning names the
dashboard and the datasource that exist. And the worker's queue-depth gauge, against moto's
server: it follows both queues, and a queue it cannot read is logged while the loop goes on."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

import order_worker.queue_depth as worker_module
import shop.metrics
from chaos_lab.local.aws import ShopResources, client
from chaos_lab.processes import free_port
from chaos_lab.targets.compose import ORDERS_FLEET
from order_worker.app import app as worker_app
from support import eventually, serve

ROOT = Path(__file__).resolve().parents[1]
OBSERVABILITY = ROOT / "deploy" / "compose" / "observability"
DASHBOARD = OBSERVABILITY / "grafana" / "dashboards" / "chaos-shop.json"
PROMETHEUS = OBSERVABILITY / "prometheus" / "prometheus.yml"
PROVISIONING = OBSERVABILITY / "grafana" / "provisioning"
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
PROFILE = {"prometheus", "grafana"}
# What a plain `docker compose up` starts, as before the profile existed.
PLAIN = {"postgres", "postgres-replica", "secrets", "pgbouncer", "latency-proxy", "sqs-proxy",
         "moto", "aws-init", "migrate", "catalog", "orders-1", "orders-2", "order-worker",
         "nginx"}
# Each shop service's job and the compose services it scrapes: the orders fleet's replicas
# are the instances of one job.
SHOP = {"catalog": ("catalog",), "orders": ORDERS_FLEET, "order-worker": ("order-worker",)}
# Prometheus's own series per target, not the shop's: the one name allowed beside them.
PROMETHEUS_SERIES = {"up"}


# PromQL: the metric names an expression selects ---------------------------------------------

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset", "atan2", "inf", "nan"}
NAME = r"[A-Za-z_:][A-Za-z0-9_:]*"


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: strings, label matchers, ranges and
    grouping clauses are cut out first; an identifier followed by ``(`` is a function or an
    aggregation; what remains, keywords and numbers aside, is a metric name."""
    assert "__name__" not in expr, f"select metrics by name, not by __name__: {expr}"
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\[\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text)
    names = set()
    for match in re.finditer(rf"(?<![\w$.]){NAME}", text):
        following = text[match.end():].lstrip()
        if following.startswith("(") or match[0].lower() in KEYWORDS:
            continue
        names.add(match[0])
    return names


def test_the_promql_reader_finds_metrics_and_nothing_else() -> None:
    expr = ('histogram_quantile(0.99, sum by (job, route, le) ('
            'rate(shop_http_request_seconds_bucket{route!~"/metrics|/health", status=~"5.."}'
            '[$__rate_interval]))) / on (job) '
            'group_left (x) sum without (kind) (a_b:c offset 5m) > bool 1e3 or up')
    assert metric_names(expr) == {"shop_http_request_seconds_bucket", "a_b:c", "up"}


def exported_sample_names() -> set[str]:
    """Every sample name the shop's registry produces for its metrics (src/shop/metrics.py),
    labelled or not: counters' ``_total``, histograms' ``_bucket``/``_sum``/``_count``, gauges'
    own name. Each is required to be registered in the process's registry, as /metrics serves it."""
    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"],
                "summary": ["", "_sum", "_count"], "info": ["_info"], "enum": [""]}
    names = set()
    for value in vars(shop.metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        for family in value.describe():
            names.update(family.name + suffix for suffix in suffixes[family.type])
    registered = set(REGISTRY._names_to_collectors)  # what /metrics can serve
    assert names <= registered, names - registered
    return names


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels() -> list[dict[str, Any]]:
    found = []
    for panel in dashboard()["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # a collapsed row holds its panels
    return [panel for panel in found if panel["type"] != "row"]


def expressions() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel["targets"]]


def test_every_dashboard_metric_is_one_the_shop_exports() -> None:
    exported = exported_sample_names()
    queried = set()
    for expr in expressions():
        names = metric_names(expr)
        assert names, f"no metric in {expr}"
        unknown = names - exported - PROMETHEUS_SERIES
        assert not unknown, f"{sorted(unknown)} in {expr}: not exported by src/shop/metrics.py"
        queried |= names
    # what the dashboard is for: none of these may silently fall off it
    assert {"shop_http_requests_total", "shop_http_request_seconds_bucket",
            "shop_breaker_state", "shop_breaker_transitions_total", "shop_fallbacks_total",
            "shop_orders_outcome_unknown_total", "shop_requests_shed_total", "shop_queue_messages",
            "shop_worker_messages_total", "shop_orders_failed_total"} <= queried


def test_latency_panels_take_quantiles_of_the_histogram_buckets() -> None:
    quantiles = [expr for expr in expressions() if "histogram_quantile" in expr]
    assert {re.search(r"histogram_quantile\(([\d.]+)", expr)[1]  # type: ignore[index]
            for expr in quantiles} == {"0.5", "0.99"}
    for expr in quantiles:
        assert "_bucket" in expr and re.search(r"by \([^)]*\ble\b", expr), expr


def test_dashboard_panels_use_the_provisioned_datasource() -> None:
    (datasource,) = yaml.safe_load(
        (PROVISIONING / "datasources" / "prometheus.yaml").read_text())["datasources"]
    assert datasource["type"] == "prometheus"
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": datasource["uid"]}, \
            panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"]
            assert target["expr"].strip(), panel["title"]
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    assert dashboard()["uid"] == "chaos-shop"  # the address docs and the screenshot use


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed "
                    "(Debian's prometheus package): the expressions are not parsed by Prometheus")
def test_prometheus_parses_every_dashboard_expression(tmp_path: Path) -> None:
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": expr.replace("$__rate_interval", "1m")}
        for i, expr in enumerate(expressions())]}]}
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# Prometheus, Grafana and the compose file --------------------------------------------------------


def container_port(service: str) -> int:
    """The shop process's port inside its container (what other containers reach)."""
    (entry,) = SERVICES[service]["ports"]
    return int(str(entry).rsplit(":", 1)[1])


def test_prometheus_scrapes_exactly_the_shop_processes() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    assert config["global"]["scrape_interval"] == "5s"
    scraped: dict[str, dict[str, int]] = {}
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        (static,) = job["static_configs"]
        scraped[job["job_name"]] = {target.split(":")[0]: int(target.split(":")[1])
                                    for target in static["targets"]}
    # one job per service, named after it; each replica of the orders fleet a target of its
    # job, so that the dashboard's sums by job add the fleet up
    assert scraped == {job: {service: container_port(service) for service in services}
                       for job, services in SHOP.items()}
    assert scraped["order-worker"]["order-worker"] == int(
        SERVICES["order-worker"]["environment"]["SHOP_WORKER_HEALTH_PORT"])
    up = next(panel for panel in panels() if panel["targets"][0]["expr"].startswith("up{"))
    (target,) = up["targets"]
    jobs = re.search(r'job=~"([^"]*)"', target["expr"])
    assert jobs and jobs[1].split("|") == list(SHOP)
    assert target["legendFormat"] == "{{instance}}"  # one line per replica


def test_the_profile_is_opt_in() -> None:
    for service in PROFILE:
        assert SERVICES[service]["profiles"] == ["observability"], service
    plain = {service for service, spec in SERVICES.items() if "profiles" not in spec}
    assert plain == PLAIN, "a plain `docker compose up` starts what it started before"
    for service, spec in SERVICES.items():  # nothing outside the profile waits for it
        if "observability" not in spec.get("profiles", []):
            assert not PROFILE & set(spec.get("depends_on", {})), service


def test_the_profile_publishes_on_this_machine_only() -> None:
    published = {service: [str(entry) for entry in SERVICES[service]["ports"]]
                 for service in PROFILE}
    assert published == {"prometheus": ["127.0.0.1:9090:9090"],
                         "grafana": ["127.0.0.1:3000:3000"]}
    for service in PROFILE:
        # the exact tag behind the variable a digest pin replaces (scripts/pin_images.py)
        default = re.fullmatch(r"\$\{[A-Z_]+_IMAGE:-([^}]+)\}", SERVICES[service]["image"])
        assert default, SERVICES[service]["image"]
        image, _, tag = default[1].partition(":")
        assert image == {"prometheus": "prom/prometheus", "grafana": "grafana/grafana"}[service]
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), "pinned to a release"


def mounts(service: str) -> dict[str, Path]:
    """Container path: repository path, for the bind mounts of a service."""
    found = {}
    for volume in SERVICES[service]["volumes"]:
        source, target = str(volume).split(":")[:2]
        if source.startswith("./"):
            found[target] = ROOT / source
    return found


def test_prometheus_runs_the_config_in_the_repository() -> None:
    assert mounts("prometheus")["/etc/prometheus/prometheus.yml"] == PROMETHEUS
    assert "--config.file=/etc/prometheus/prometheus.yml" in SERVICES["prometheus"]["command"]


def test_grafana_provisioning_names_what_exists() -> None:
    grafana = mounts("grafana")
    assert grafana["/etc/grafana/provisioning"] == PROVISIONING
    (datasource,) = yaml.safe_load(
        (PROVISIONING / "datasources" / "prometheus.yaml").read_text())["datasources"]
    url = re.fullmatch(r"http://([\w-]+):(\d+)", datasource["url"])
    assert url and url[1] == "prometheus" and f"127.0.0.1:9090:{url[2]}" in \
        SERVICES["prometheus"]["ports"]
    assert datasource["jsonData"]["timeInterval"] == yaml.safe_load(
        PROMETHEUS.read_text())["global"]["scrape_interval"]
    (provider,) = yaml.safe_load(
        (PROVISIONING / "dashboards" / "chaos-shop.yaml").read_text())["providers"]
    folder = provider["options"]["path"]
    assert grafana[folder] == DASHBOARD.parent, "the provider reads the mounted dashboards"
    assert sorted(DASHBOARD.parent.glob("*.json")) == [DASHBOARD]
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert grafana[str(Path(home).parent)] / Path(home).name == DASHBOARD
    assert SERVICES["grafana"]["depends_on"] == {"prometheus": {"condition": "service_healthy"}}


def test_the_screenshot_script_is_where_the_docs_say() -> None:
    script = ROOT / "scripts" / "dashboard-screenshot.sh"
    text = script.read_text()
    assert "/d/chaos-shop" in text and "--headless" in text
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True,
                            timeout=10, check=False)
    assert result.returncode == 0, result.stderr


# The queue-depth gauge, against moto's server ---------------------------------------------------


def depth(queue: str) -> float | None:
    return REGISTRY.get_sample_value("shop_queue_messages", {"queue": queue})


def no_database() -> str:
    """A database URL nobody answers: the worker's pollers never receive, so the queues keep
    what the test puts there, and the gauge alone is watched."""
    return f"postgresql://shop:shop@127.0.0.1:{free_port()}/shop"


@pytest.fixture
def quick_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "QUEUE_DEPTH_SECONDS", 0.2)


async def test_the_worker_exports_both_queues_depth(
        moto_url: str, aws: ShopResources, aws_env: dict[str, str], quick_rounds: None) -> None:
    sqs = client("sqs", moto_url)
    for n in range(3):
        sqs.send_message(QueueUrl=aws.queue_url, MessageBody=json.dumps({"n": n}))
    # in flight counts too: received, neither deleted nor visible again
    assert sqs.receive_message(QueueUrl=aws.queue_url, VisibilityTimeout=60)["Messages"]
    for _ in range(2):
        sqs.send_message(QueueUrl=aws.dlq_url, MessageBody="{}")
    env = {**aws_env, "SHOP_DATABASE_URL": no_database()}
    async with serve(worker_app, ready=False, **env):
        await eventually(lambda: asyncio.to_thread(
            lambda: depth("orders") == 3 and depth("dead-letter") == 2), "3 and 2", timeout=10)
        sqs.purge_queue(QueueUrl=aws.dlq_url)
        await eventually(lambda: asyncio.to_thread(lambda: depth("dead-letter") == 0),
                         "the purged DLQ at 0", timeout=10)
        assert depth("orders") == 3


async def test_a_queue_it_cannot_read_is_logged_and_the_loop_goes_on(
        moto_url: str, aws: ShopResources, aws_env: dict[str, str], quick_rounds: None,
        caplog: pytest.LogCaptureFixture) -> None:
    sqs = client("sqs", moto_url)
    dlq_name = aws.dlq_url.rsplit("/", 1)[1]
    env = {**aws_env, "SHOP_DATABASE_URL": no_database()}
    with caplog.at_level(logging.WARNING, logger="order_worker"):
        async with serve(worker_app, ready=False, **env):
            await eventually(lambda: asyncio.to_thread(lambda: depth("orders") == 0),
                             "the first round", timeout=10)
            sqs.delete_queue(QueueUrl=aws.dlq_url)
            await eventually(lambda: asyncio.to_thread(lambda: failures(caplog) >= 2),
                             "two failed rounds, logged", timeout=10)
            sqs.send_message(QueueUrl=aws.queue_url, MessageBody="{}")
            # the same name again, as SQS would give it back: the loop reads it once more
            assert sqs.create_queue(QueueName=dlq_name)["QueueUrl"] == aws.dlq_url
            sqs.send_message(QueueUrl=aws.dlq_url, MessageBody="{}")
            await eventually(lambda: asyncio.to_thread(
                lambda: depth("orders") == 1 and depth("dead-letter") == 1),
                "the loop reading both queues again", timeout=10)


def failures(caplog: pytest.LogCaptureFixture) -> int:
    return sum(record.getMessage().startswith("queue depth not read: ")
               for record in caplog.records)


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An endpoint that accepts connections and never answers: AWS hung."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    for connection in held:
        connection.close()
    server.close()


async def test_a_hung_queue_costs_a_bounded_round(
        aws_env: dict[str, str], silent_endpoint: str, quick_rounds: None,
        caplog: pytest.LogCaptureFixture) -> None:
    """Every call is bounded: with AWS accepting and never answering, rounds keep failing
    (logged) at the pace of the client's timeouts, and the worker stops in time."""
    env = {**aws_env, "SHOP_DATABASE_URL": no_database(), "AWS_ENDPOINT_URL": silent_endpoint,
           "SHOP_AWS_TIMEOUT": "0.3", "SHOP_WORKER_WAIT_SECONDS": "0",
           "SHOP_ORDER_QUEUE_URL": f"{silent_endpoint}/123456789012/q-{uuid.uuid4().hex[:8]}"}
    with caplog.at_level(logging.WARNING, logger="order_worker"):
        async with asyncio.timeout(20):
            async with serve(worker_app, ready=False, **env):
                await eventually(lambda: asyncio.to_thread(lambda: failures(caplog) >= 2),
                                 "two bounded rounds, logged", timeout=15)
