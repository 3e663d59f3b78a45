"""docker-compose.yml checked against the code, with no Docker engine: the settings the
services are given are settings they read, ports and health checks match the images, every
dependency waits for health, images are pinned, secrets come from the environment, the
services run as their least-privilege roles after a migrate step as the owner, and nginx,
PgBouncer and the AWS init route to and create what the services expect. PgBouncer's
configuration and the AWS init script are run for real (the local pgbouncer, moto's server)."""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import pwd
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import yaml

from chaos_lab.local import aws as lab_aws
from chaos_lab.local.pgbouncer import READER_DB, WRITER_DB
from chaos_lab.local.postgres import CATALOG_USER, ORDERS_USER
from chaos_lab.processes import (
    as_service_user,
    free_port,
    give_to_service_user,
    port_open,
    spawn,
    stop_process,
    wait_until,
)
from chaos_lab.targets.compose import (
    NODES,
    ORDERS_FLEET,
    PASSED_THROUGH,
    ROUTE,
    SHOP_SERVICES,
    SQS_LATENCY,
    ComposePorts,
)
from shop.order_records import UNDECIDED_INDEX
from shop.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "compose"
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
# service: container port (the orders fleet: two replicas of one definition)
SHOP = {"catalog": 8000, "orders-1": 8000, "orders-2": 8000, "order-worker": 8081}
STATEFUL = ("postgres", "postgres-replica", "pgbouncer", "moto")
# ${VAR:?message}: from the environment (or .env), never a value in the file, required (compose
# refuses to run without it and says which), and never a fallback to another password.
SECRET = re.compile(r"^\$\{(?P<var>[A-Z_]+_PASSWORD):\?(?P<message>[^}$]+)\}$")
# Each password of the stack, its own variable, listed in .env.example.
PASSWORDS = {"POSTGRES_PASSWORD", "POSTGRES_OWNER_PASSWORD", "POSTGRES_ORDERS_PASSWORD",
             "POSTGRES_CATALOG_PASSWORD", "PGBOUNCER_ADMIN_PASSWORD", "GRAFANA_ADMIN_PASSWORD"}
OWNER = "shop"  # owns the tables (initdb/10-shop.sh); only the migrate step logs in as it
# Each shop service's database role, and the variable its password comes from.
LATENCY = "latency-proxy"
ROLES = {"catalog": (CATALOG_USER, "POSTGRES_CATALOG_PASSWORD"),
         **{replica: (ORDERS_USER, "POSTGRES_ORDERS_PASSWORD") for replica in ORDERS_FLEET},
         "order-worker": (ORDERS_USER, "POSTGRES_ORDERS_PASSWORD")}


def env(service: str) -> dict[str, str]:
    value = SERVICES[service].get("environment", {})
    if isinstance(value, list):
        value = dict(item.split("=", 1) for item in value)
    return {k: str(v) for k, v in value.items()}


def published(service: str) -> dict[int, int]:
    """Container port: host port, for "127.0.0.1:HOST:CONTAINER" entries."""
    ports = {}
    for entry in SERVICES[service].get("ports", []):
        address, host, container = str(entry).split(":")
        assert address == "127.0.0.1", f"{service} publishes {entry} beyond this machine"
        ports[int(container)] = int(host)
    return ports


def image_folder(service: str) -> str:
    """services/FOLDER/Dockerfile: each replica of the orders fleet runs the orders image."""
    return "orders" if service in ORDERS_FLEET else service


def dockerfile(service: str) -> str:
    build = SERVICES[service]["build"]
    return (ROOT / build["context"] / build["dockerfile"]).read_text()


def has_healthcheck(service: str) -> bool:
    if "healthcheck" in SERVICES[service]:
        return not SERVICES[service]["healthcheck"].get("disable", False)
    return "build" in SERVICES[service] and "\nHEALTHCHECK " in dockerfile(service)


# The services and the settings they read ----------------------------------------------------


def test_every_shop_setting_given_is_one_the_code_reads() -> None:
    fields = {f"SHOP_{name.upper()}" for name in Settings.model_fields}
    for service in SERVICES:
        unknown = {name for name in env(service) if name.startswith("SHOP_")} - fields
        assert not unknown, f"{service}: {sorted(unknown)} are not Settings fields"


@pytest.mark.parametrize("service", list(SHOP))
def test_shop_services_reach_the_proxy_endpoints_without_a_password_in_the_url(
        service: str) -> None:
    settings = env(service)
    writer, reader = urlsplit(settings["SHOP_DATABASE_URL"]), urlsplit(
        settings["SHOP_DATABASE_READER_URL"])
    # through the latency proxy (the brownout's), which forwards to PgBouncer
    assert (writer.hostname, writer.port, writer.path) == (LATENCY, 6432, f"/{WRITER_DB}")
    assert (reader.hostname, reader.port, reader.path) == (LATENCY, 6432, f"/{READER_DB}")
    assert writer.password is None and reader.password is None
    assert "SHOP_DATABASE_PASSWORD" not in settings  # a file, which a rotation rewrites
    assert SERVICES[service]["depends_on"][LATENCY]["condition"] == "service_healthy"
    # the compose target's switches come from the environment, defaulting to the resilient shop
    for name in PASSED_THROUGH:
        assert settings[name].startswith(f"${{{name}:-"), name
    assert settings["SHOP_ENABLE_PROXY"].endswith(":-true}")
    assert settings["SHOP_ENABLE_DEGRADATION"].endswith(":-true}")
    Settings.model_validate({  # the values parse as the services will parse them
        k.removeprefix("SHOP_").lower(): v for k, v in settings.items()
        if k.startswith("SHOP_") and not v.startswith("${")})


@pytest.mark.parametrize("service", list(SHOP))
def test_no_shop_service_connects_as_the_owner(service: str) -> None:
    """Least privilege: each service logs in as its role, on both endpoints, with its role's
    password (never the owner's variable alone), and never migrates."""
    settings = env(service)
    role, password_var = ROLES[service]
    for url in ("SHOP_DATABASE_URL", "SHOP_DATABASE_READER_URL"):
        assert urlsplit(settings[url]).username == role != OWNER, (service, url)
    # the role's password file, on the role's own volume, which `secrets` writes from the
    # role's variable; no other role's volume is mounted
    folder = Path(settings["SHOP_DATABASE_PASSWORD_FILE"]).parent
    assert folder == Path(f"/run/chaos-shop/{role}")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in SERVICES[service]["volumes"]}
    assert {m for m in mounts if m.startswith("/run/chaos-shop")} == {str(folder)}
    assert mounts[str(folder)] in [v.split(":")[0] for v in SERVICES["secrets"]["volumes"]
                                   if v.split(":")[1] == str(folder)]
    secret = SECRET.match(env("secrets")[password_var])
    assert secret and secret["var"] == password_var
    # written before PgBouncer starts, which the services wait for
    assert SERVICES["pgbouncer"]["depends_on"]["secrets"]["condition"] == \
        "service_completed_successfully"
    assert SERVICES[service]["depends_on"]["pgbouncer"]["condition"] == "service_healthy"
    assert settings["SHOP_MIGRATE"] == "false"
    assert SERVICES[service]["depends_on"]["migrate"]["condition"] == \
        "service_completed_successfully"


@pytest.mark.parametrize("service", ["catalog", *ORDERS_FLEET])
def test_forwarded_headers_are_believed_from_the_stacks_network_only(service: str) -> None:
    """uvicorn takes X-Forwarded-For from FORWARDED_ALLOW_IPS' networks only: here the stack's
    own subnet, where nginx (the load balancer) is; never "*"."""
    trusted = env(service)["FORWARDED_ALLOW_IPS"]
    subnet = COMPOSE["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert trusted == subnet == "${CHAOS_SHOP_SUBNET:-172.28.240.0/24}"
    network = ipaddress.ip_network(subnet.split(":-")[1].rstrip("}"))
    assert network.is_private and network.num_addresses <= 256


def test_the_migrate_step_runs_the_orders_image_as_the_owner_once() -> None:
    spec = SERVICES["migrate"]
    assert spec["build"] == SERVICES["orders-1"]["build"]  # the same image, another command
    assert spec["command"] == ["python", "-m", "shop.migrate", "--timeout", "300"]
    assert spec["restart"] == "no" and spec["healthcheck"] == {"disable": True}
    settings = env("migrate")
    url = urlsplit(settings["SHOP_DATABASE_URL"])
    assert (url.username, url.password, url.hostname, url.port, url.path) == (
        OWNER, None, "pgbouncer", 6432, f"/{WRITER_DB}")
    secret = SECRET.match(settings["SHOP_DATABASE_PASSWORD"])
    assert secret and secret["var"] == "POSTGRES_OWNER_PASSWORD"  # the owner's own
    assert "SHOP_MIGRATE" not in settings  # it migrates: that is all it does
    assert spec["depends_on"] == {"pgbouncer": {"condition": "service_healthy"}}
    # nothing else logs in as the owner through PgBouncer
    owners = [service for service in SERVICES if any(
        urlsplit(value).username == OWNER for name, value in env(service).items()
        if name.startswith("SHOP_DATABASE") and name.endswith("URL"))]
    assert owners == ["migrate"]


def test_the_orders_fleet_is_one_definition_on_a_port_per_replica() -> None:
    """Two replicas of one service definition (a YAML anchor, not two copies), each published
    on a port of its own, both running the image's command: uvicorn's process manager
    (src/shop/serve.py), which the fleet-crash and rolling-deploy faults rely on."""
    text = (ROOT / "docker-compose.yml").read_text()
    first, *others = ORDERS_FLEET
    anchor = re.search(rf"^  {first}: &(\w+)$", text, re.M)
    assert anchor, f"{first} is the fleet's definition, an anchor"
    for replica in others:  # the same service but for its published port
        assert re.search(rf"^  {replica}:\n    <<: \*{anchor[1]}\n", text, re.M), replica
        assert {k: v for k, v in SERVICES[replica].items() if k != "ports"} == \
            {k: v for k, v in SERVICES[first].items() if k != "ports"}
    hosts = [published(replica)[8000] for replica in ORDERS_FLEET]
    assert len(set(hosts)) == len(hosts) == 2
    assert {s for s in SERVICES if s.startswith("orders")} == set(ORDERS_FLEET)
    assert set(SHOP) == set(SHOP_SERVICES)
    assert "command" not in SERVICES[first] and "entrypoint" not in SERVICES[first]
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile(first), re.M)
    assert cmd and json.loads(cmd[1])[:4] == ["python", "-m", "shop.serve", "orders.main:app"]
    # its graceful stop fits in compose's grace period
    graceful = json.loads(cmd[1])
    seconds = int(graceful[graceful.index("--timeout-graceful-shutdown") + 1])
    assert seconds < int(SERVICES[first]["stop_grace_period"].rstrip("s"))


def test_sqs_is_reached_through_its_own_latency_proxy() -> None:
    """aws-slow: the services reach SQS through the same latency proxy as the database's, a
    container of its own in front of moto (transparent but during the fault); DynamoDB and the
    queue's own URL stay moto's."""
    proxy = SERVICES[SQS_LATENCY[0]]
    assert proxy["build"] == SERVICES["latency-proxy"]["build"] == SERVICES["moto"]["build"]
    assert proxy["entrypoint"] == ["python", "/opt/chaos-shop/latency_proxy.py", "serve",
                                   "--listen", "0.0.0.0:5000", "--upstream", "moto:5000"]
    assert list(SQS_LATENCY[1:3]) == proxy["entrypoint"][:2]  # the fault's `set`, same file
    assert proxy["depends_on"] == {"moto": {"condition": "service_healthy"}}
    assert "5000" in " ".join(proxy["healthcheck"]["test"])
    assert "ports" not in proxy  # the services' only, inside the stack
    for service in SHOP:
        settings = env(service)
        assert settings["AWS_ENDPOINT_URL_SQS"] == f"http://{SQS_LATENCY[0]}:5000"
        assert settings["AWS_ENDPOINT_URL"] == "http://moto:5000"
        assert SERVICES[service]["depends_on"][SQS_LATENCY[0]]["condition"] == "service_healthy"


def test_build_contexts_and_dockerfiles_exist() -> None:
    for service in SHOP:
        build = SERVICES[service]["build"]
        assert build["context"] == ".", "the repository root: one pyproject.toml, src/shop"
        path = ROOT / build["dockerfile"]
        assert path.is_file() and path.parent.name == image_folder(service), path


def test_moto_is_the_labs_patched_emulator() -> None:
    """moto and aws-init build one image: moto's server with src/chaos_lab/local/moto_server.py
    (the lab's SQS fix), the moto the lab and the tests use (tests/test_dockerfiles.py lints
    the Dockerfile itself)."""
    for service in ("moto", "aws-init"):
        build = SERVICES[service]["build"]
        assert (build["context"], build["dockerfile"]) == (".", "deploy/compose/moto/Dockerfile")
        assert set(build.get("args", {})) <= {"PYTHON_IMAGE"}  # the base image, pinnable
    text = dockerfile("moto")
    assert "COPY src/chaos_lab/local/moto_server.py /opt/chaos-shop/moto_server.py" in text
    assert '"/opt/chaos-shop/moto_server.py", "-H", "0.0.0.0", "-p", "5000"' in text
    assert 5000 in published("moto") and "EXPOSE 5000" in text
    assert SERVICES["aws-init"]["entrypoint"][0] == "python"  # boto3 comes with moto


@pytest.mark.parametrize("service", list(SHOP))
def test_shop_ports_match_the_images(service: str) -> None:
    port = SHOP[service]
    assert port in published(service)
    assert re.search(rf"^EXPOSE {port}$", dockerfile(service), re.M)
    assert re.search(rf"127\.0\.0\.1:{port}/health", dockerfile(service)) or (
        service == "order-worker" and env(service)["SHOP_WORKER_HEALTH_PORT"] == str(port))


# Health, dependencies, images, secrets ------------------------------------------------------


def test_every_stateful_and_shop_service_has_a_health_check() -> None:
    for service in (*STATEFUL, *SHOP, "nginx"):
        assert has_healthcheck(service), service
    for service in STATEFUL:
        assert SERVICES[service]["healthcheck"]["test"][0] == "CMD", "exec form"


def test_dependencies_wait_for_health_or_completion() -> None:
    for service, spec in SERVICES.items():
        depends = spec.get("depends_on", {})
        assert isinstance(depends, dict), f"{service}: depends_on needs conditions"
        for dependency, how in depends.items():
            assert dependency in SERVICES, (service, dependency)
            if has_healthcheck(dependency):
                expected = "service_healthy"
            elif SERVICES[dependency].get("restart") == "no":
                expected = "service_completed_successfully"
            else:
                expected = "service_started"
            assert how["condition"] == expected, (service, dependency, how)
    for service in SHOP:
        assert SERVICES[service]["depends_on"]["aws-init"]["condition"] == \
            "service_completed_successfully"
        assert {"pgbouncer", "moto", "migrate"} <= set(SERVICES[service]["depends_on"])


def test_images_are_pinned() -> None:
    """By exact tag, the default of the variable a digest pin replaces (scripts/pin_images.py,
    tests/test_supply_chain.py)."""
    for service, spec in SERVICES.items():
        assert ("image" in spec) != ("build" in spec), service
        if "image" in spec:
            image = re.fullmatch(r"\$\{[A-Z_]+_IMAGE:-(?P<name>[^:}]+):(?P<tag>[^}]+)\}",
                                 spec["image"])
            assert image, spec["image"]
            tag = image["tag"]
            assert tag != "latest" and re.search(r"\d+\.\d+", tag), spec["image"]


def test_secrets_come_from_the_environment() -> None:
    for service in SERVICES:
        for name, value in env(service).items():
            if name.endswith("_PASSWORD_FILE"):  # a path on a volume, no secret itself
                assert value.startswith("/run/chaos-shop/"), f"{service}: {name}"
            elif "PASSWORD" in name:
                secret = SECRET.match(value)
                assert secret, f"{service}: {name} must be ${{VAR:?message}}"
                assert secret["var"] in secret["message"], "the message names it"
            if name == "AWS_SECRET_ACCESS_KEY":  # moto's placeholder, never a real key
                assert value == "testing" and "moto" in env(service)["AWS_ENDPOINT_URL"]
    text = (ROOT / "docker-compose.yml").read_text()
    # every mention of a password variable requires it: no default, no fallback to another
    mentions = re.findall(r"\$\{(\w*PASSWORD)(\W[^}]*)?\}", text)
    assert {variable for variable, _ in mentions} == PASSWORDS
    assert all(rest.startswith(":?") for _, rest in mentions), mentions
    assert not re.search(r"PASSWORD:-", text), "a password with a default or a fallback"


def test_the_env_example_lists_every_password_with_no_value() -> None:
    """.env.example names each variable docker-compose.yml requires, with a placeholder that
    compose refuses (empty), so that a copy of it as it is starts nothing; .env is ignored by
    git and kept out of the build context."""
    example = (ROOT / ".env.example").read_text()
    assigned = dict(re.findall(r"^([A-Z_]+)=(.*)$", example, re.M))
    assert set(assigned) == PASSWORDS
    assert all(value == "" for value in assigned.values()), "placeholders only, empty"
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT, check=False,
                             timeout=10)
    assert ignored.returncode == 0, ".env must be ignored by git"
    assert ".env" in (ROOT / ".dockerignore").read_text().splitlines()


def test_no_compose_comment_names_a_file_that_does_not_exist() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    comments = "\n".join(line.split("#", 1)[1] for line in text.splitlines() if "#" in line)
    for path in re.findall(r"\b((?:deploy|src|services|scripts|docs|infra)/[\w./-]+\w)", comments):
        assert (ROOT / path).exists(), f"docker-compose.yml names {path}, which does not exist"


def test_the_locust_services_are_under_a_profile() -> None:
    for service in ("locust", "locust-worker"):
        assert SERVICES[service]["profiles"] == ["load"]
        for volume in SERVICES[service]["volumes"]:
            assert (ROOT / volume.split(":")[0]).exists(), volume
    assert "--master" in SERVICES["locust"]["command"]
    assert SERVICES["locust-worker"]["command"][-2:] == ["--master-host", "locust"]
    assert env("locust")["LOCUST_HOST"] == "http://nginx:8080"


def test_mounted_files_exist() -> None:
    for service, spec in SERVICES.items():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), (service, volume)


# nginx, PostgreSQL, PgBouncer, AWS ----------------------------------------------------------


def test_nginx_routes_like_the_alb() -> None:
    conf = (DEPLOY / "nginx" / "nginx.conf").read_text()
    routes = dict(re.findall(r"location (/\w+) \{[^}]*?proxy_pass http://(\w+);\s*\}", conf))
    assert routes == {"/products": "catalog", "/orders": "orders"}
    servers = {}
    for upstream in routes.values():
        block = re.search(rf"upstream {upstream} \{{([^}}]*)\}}", conf)
        assert block, upstream
        # each found again by its name (the `resolve` parameter): recreated containers move
        found = re.findall(r"^\s*server (\S+):(\d+) resolve[^;]*;$", block[1], re.M)
        assert len(found) == len(re.findall(r"^\s*server ", block[1], re.M)), block[1]
        for service, port in found:
            assert service in SERVICES and int(port) == SHOP[service], (upstream, service)
        servers[upstream] = tuple(service for service, _ in found)
    # the orders round-robin over the whole fleet, as the ALB over the ECS tasks
    assert servers == {"catalog": ("catalog",), "orders": ORDERS_FLEET}
    # overload as in the lab's entry: a slow replica is not taken for a dead one, each request
    # says when it arrived, and orders past the entry's ceiling are refused here, 503 with
    # Retry-After
    assert all("max_fails=0" in line for line in re.findall(r"server orders-\d\S+ [^\n]*", conf))
    assert 'X-Request-Start "t=${msec}"' in conf
    orders = re.search(r"location /orders \{([^}]*)\}", conf)[1]  # type: ignore[index]
    assert re.search(r"limit_conn \w+ \d+;", orders) and "limit_conn_status 503;" in orders
    assert "add_header Retry-After 1 always;" in conf
    assert re.search(r"listen (\d+);", conf)[1] == "8080"  # type: ignore[index]
    assert 8080 in published("nginx")


def test_postgres_nodes_are_peers() -> None:
    assert set(NODES) <= set(SERVICES)
    primary, replica = env("postgres"), env("postgres-replica")
    assert (primary["NODE_ROLE"], primary["PEER_HOST"]) == ("primary", "postgres-replica")
    assert (replica["NODE_ROLE"], replica["PEER_HOST"]) == ("replica", "postgres")
    for node in (primary, replica):
        secret = SECRET.match(node["POSTGRES_PASSWORD"])
        assert secret and secret["var"] == "POSTGRES_PASSWORD"  # the superuser's
    init = (DEPLOY / "postgres" / "initdb" / "10-shop.sh").read_text()
    assert f"CREATE ROLE {OWNER} LOGIN" in init and f"CREATE DATABASE shop OWNER {OWNER}" in init
    assert "host replication all all scram-sha-256" in init
    # the owner and the app roles, each with its own password (the writer's first start; a
    # replica's base backup brings them along), given to the node that runs the init, read by
    # psql from its environment (never its command line), none falling back to another
    for role, variable in {(OWNER, "POSTGRES_OWNER_PASSWORD"), *ROLES.values()}:
        assert re.search(rf"\\getenv (\w+) {variable}\n(.*\n)*CREATE ROLE {role} LOGIN "
                         rf"PASSWORD :'\1';", init), role
        assert f": \"${{{variable}:?set {variable}}}\"" in init
        secret = SECRET.match(primary[variable])
        assert secret and secret["var"] == variable
    assert " -v password" not in init and "_password=" not in init


@pytest.mark.parametrize("script", sorted(str(p.relative_to(ROOT))
                                          for p in DEPLOY.rglob("*.sh")))
def test_shell_scripts_parse(script: str) -> None:
    shell = "bash" if "bash" in (ROOT / script).read_text().splitlines()[0] else "sh"
    result = subprocess.run([shell, "-n", str(ROOT / script)], capture_output=True, text=True,
                            timeout=10, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("script", "variables"), [
    ("postgres/node.sh", ["POSTGRES_PASSWORD"]),
    ("pgbouncer/start.sh", ["POSTGRES_OWNER_PASSWORD", "PGBOUNCER_ADMIN_PASSWORD"]),
    ("secrets/write.sh", ["POSTGRES_ORDERS_PASSWORD", "POSTGRES_CATALOG_PASSWORD"]),
])
def test_the_containers_that_use_a_password_refuse_to_start_without_it(
        script: str, variables: list[str], tmp_path: Path) -> None:
    """Each checks its own variables (as compose does), each one alone missing."""
    shell = "bash" if script.endswith("node.sh") else "sh"
    for missing in variables:
        given = {v: "x" for v in variables if v != missing}
        result = subprocess.run([shell, str(DEPLOY / script)], capture_output=True, text=True,
                                env={"PATH": "/usr/bin:/bin", "PEER_HOST": "nowhere",
                                     "PGDATA": "/nonexistent", "SECRETS_DIR": str(tmp_path),
                                     missing: "", **given},
                                timeout=10, check=False)
        assert result.returncode == 1, (missing, result.stderr)
        assert f"{missing} is not set: set it (.env.example) before docker compose up" in \
            result.stderr


def test_pgbouncer_endpoints_point_at_the_postgres_services(tmp_path: Path) -> None:
    settings = env("pgbouncer")
    assert (settings["WRITER_HOST"], settings["READER_HOST"]) == NODES
    assert "POSTGRES_PASSWORD" not in settings, "PgBouncer never has the superuser's password"
    mount = next(v for v in SERVICES["pgbouncer"]["volumes"] if "deploy/compose/pgbouncer" in v)
    assert Path(ROUTE).parent == Path(mount.split(":")[1])
    subprocess.run(["sh", str(DEPLOY / "pgbouncer" / "route.sh"), settings["WRITER_HOST"],
                    settings["READER_HOST"]], env={"PGBOUNCER_RUN_DIR": str(tmp_path)},
                   check=True, capture_output=True, timeout=10)
    routes = dict(line.split(" = ") for line in
                  (tmp_path / "databases.ini").read_text().splitlines())
    assert routes == {WRITER_DB: "host=postgres port=5432 dbname=shop",
                      READER_DB: "host=postgres-replica port=5432 dbname=shop"}
    ini = (DEPLOY / "pgbouncer" / "pgbouncer.ini").read_text()
    assert "%include /tmp/pgbouncer/databases.ini" in ini  # where route.sh writes by default
    # as the lab's (chaos_lab.local.pgbouncer)
    assert re.search(r"^pool_mode = session$", ini, re.M)


# Plays the host's psql for start.sh: the node named by FAKE_WRITER is the writer, the other
# one is in recovery; anyone but the owner with its password is refused, as it would be.
FAKE_PSQL = """#!/bin/sh
[ "$PGPASSWORD" = 'pa"ss' ] || { echo "no password" >&2; exit 2; }
while [ $# -gt 0 ]; do
    [ "$1" = -h ] && host=$2
    [ "$1" = -U ] && [ "$2" != shop ] && { echo "not the owner: $2" >&2; exit 2; }
    shift
done
[ "$host" = "$FAKE_WRITER" ] && echo t || echo f
"""


def test_pgbouncer_knows_the_owner_the_app_roles_and_its_admin(tmp_path: Path) -> None:
    """start.sh writes every user with its own password to the auth file (a pgbouncer that
    prints it stands in for the real one): none falls back to another's."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "psql").write_text(FAKE_PSQL)
    (fake_bin / "pgbouncer").write_text(f'#!/bin/sh\ncat "{tmp_path}/userlist.txt"\n')
    for tool in fake_bin.iterdir():
        tool.chmod(0o755)
    settings = env("pgbouncer")
    for variable in ("POSTGRES_OWNER_PASSWORD", "POSTGRES_ORDERS_PASSWORD",
                     "POSTGRES_CATALOG_PASSWORD", "PGBOUNCER_ADMIN_PASSWORD"):
        secret = SECRET.match(settings[variable])
        assert secret and secret["var"] == variable

    def start(**passwords: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", str(DEPLOY / "pgbouncer" / "start.sh")], capture_output=True, text=True,
            timeout=10, check=False,
            env={"PATH": f"{fake_bin}:/usr/bin:/bin", "POSTGRES_OWNER_PASSWORD": 'pa"ss',
                 "PGBOUNCER_ADMIN_PASSWORD": 'adm"in', "PGBOUNCER_RUN_DIR": str(tmp_path),
                 "FAKE_WRITER": "postgres", **passwords})

    def users(**passwords: str) -> dict[str, str]:
        result = start(**passwords)
        assert result.returncode == 0, result.stderr
        rows = [re.fullmatch(r'"(\w+)" "((?:[^"]|"")*)"', line)
                for line in result.stdout.splitlines() if line.startswith('"')]
        assert all(rows), result.stdout
        assert (tmp_path / "userlist.txt").stat().st_mode & 0o777 == 0o600
        return {row[1]: row[2].replace('""', '"') for row in rows if row}

    secrets = tmp_path / "secrets"
    assert users(POSTGRES_ORDERS_PASSWORD="o", POSTGRES_CATALOG_PASSWORD='c"',
                 SECRETS_DIR=str(secrets)) == {
        OWNER: 'pa"ss', ORDERS_USER: "o", CATALOG_USER: 'c"', "pgbouncer": 'adm"in'}
    # no fallback: an app role without its password is no start at all
    refused = start(POSTGRES_ORDERS_PASSWORD="o", SECRETS_DIR=str(secrets))
    assert refused.returncode == 1 and "no password for shop_catalog" in refused.stderr
    # PgBouncer's copy of the password files wins over the environment (a rotation survives
    # a restart)
    for role, password in ((ORDERS_USER, "o2"), (CATALOG_USER, 'c"2')):
        (secrets / role).mkdir(parents=True)
        (secrets / role / "password.pgbouncer").write_text(password + "\n")
    assert users(POSTGRES_ORDERS_PASSWORD="o", SECRETS_DIR=str(secrets)) == {
        OWNER: 'pa"ss', ORDERS_USER: "o2", CATALOG_USER: 'c"2', "pgbouncer": 'adm"in'}


def test_the_password_files_are_written_once_and_rewritten_on_rotation(tmp_path: Path) -> None:
    """Two copies of each role's password, each 0600 and (as root, as the one-shot runs)
    owned by its one reader: the services' user (10001) and PgBouncer's."""
    def write(*args: str, **passwords: str) -> dict[str, str]:
        subprocess.run(["sh", str(DEPLOY / "secrets" / "write.sh"), *args], check=True,
                       capture_output=True, timeout=10,
                       env={"PATH": "/usr/bin:/bin", "SECRETS_DIR": str(tmp_path),
                            "PGBOUNCER_USER": "postgres", **passwords})
        read = {}
        for role in (ORDERS_USER, CATALOG_USER):
            service, bouncer = tmp_path / role / "password", tmp_path / role / "password.pgbouncer"
            for file in (service, bouncer):
                assert file.stat().st_mode & 0o777 == 0o600, file
            assert service.read_text() == bouncer.read_text()
            if os.geteuid() == 0:
                assert (service.stat().st_uid, service.stat().st_gid) == (10001, 10001)
                assert bouncer.stat().st_uid == pwd.getpwnam("postgres").pw_uid
            read[role] = service.read_text()
        return read

    assert write(POSTGRES_ORDERS_PASSWORD="o", POSTGRES_CATALOG_PASSWORD="c") == {
        ORDERS_USER: "o\n", CATALOG_USER: "c\n"}
    # a later start keeps them (the database kept its roles' passwords too)
    assert write(POSTGRES_ORDERS_PASSWORD="x", POSTGRES_CATALOG_PASSWORD="y") == {
        ORDERS_USER: "o\n", CATALOG_USER: "c\n"}
    assert write("--rotate", POSTGRES_ORDERS_PASSWORD="n1", POSTGRES_CATALOG_PASSWORD="n2") == {
        ORDERS_USER: "n1\n", CATALOG_USER: "n2\n"}


def start_pgbouncer_script(root: Path, writer: str, *extra: str) -> list[str]:
    """start.sh as its container runs it, with the fake psql first on PATH."""
    fake_bin = root / "bin"
    fake_bin.mkdir(parents=True, exist_ok=True)
    (fake_bin / "psql").write_text(FAKE_PSQL)
    (fake_bin / "psql").chmod(0o755)
    return as_service_user(["env", "POSTGRES_OWNER_PASSWORD=pa\"ss",
                            "PGBOUNCER_ADMIN_PASSWORD=adm\"in", "POSTGRES_ORDERS_PASSWORD=o",
                            "POSTGRES_CATALOG_PASSWORD=c", f"PGBOUNCER_RUN_DIR={root}",
                            f"PGBOUNCER_INI={root / 'pgbouncer.ini'}", f"FAKE_WRITER={writer}",
                            f"PATH={fake_bin}:/usr/sbin:/usr/bin:/bin", *extra,
                            "sh", str(DEPLOY / "pgbouncer" / "start.sh")])


@pytest.fixture
def compose_pgbouncer(work_dir: Path, request: pytest.FixtureRequest) -> Iterator[int]:
    """deploy/compose/pgbouncer started as its container would start it, on this machine,
    with the writer node named by the test's parameter."""
    writer = request.param
    root = work_dir / f"compose-pgbouncer-{writer}"
    give_to_service_user(root)
    port = free_port()
    ini = (DEPLOY / "pgbouncer" / "pgbouncer.ini").read_text()
    ini = ini.replace("/tmp/pgbouncer", str(root)).replace("listen_port = 6432",
                                                           f"listen_port = {port}")
    ini = ini.replace("listen_addr = 0.0.0.0", "listen_addr = 127.0.0.1")
    (root / "pgbouncer.ini").write_text(ini)
    proc = spawn(start_pgbouncer_script(root, writer), root / "stdout.log")
    try:
        wait_until(lambda: port_open(port), "the compose pgbouncer", timeout=10)
        yield port
    finally:
        stop_process(proc)


@pytest.mark.parametrize(("compose_pgbouncer", "reader"), [
    ("postgres", "postgres-replica"),
    # an odd number of failovers: the nodes keep their names, the roles have swapped
    ("postgres-replica", "postgres"),
], indirect=["compose_pgbouncer"])
def test_pgbouncer_routes_to_the_node_that_is_the_writer_when_it_starts(
        compose_pgbouncer: int, reader: str) -> None:
    result = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(compose_pgbouncer), "-U", "pgbouncer",
         "-d", "pgbouncer", "-XAtqc", "SHOW DATABASES"],
        env={"PGPASSWORD": 'adm"in', "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
        timeout=10, check=True)
    hosts = {row.split("|")[0]: row.split("|")[1] for row in result.stdout.splitlines()}
    assert hosts[READER_DB] == reader
    assert hosts[WRITER_DB] == next(node for node in NODES if node != reader)


def test_pgbouncer_does_not_start_without_a_writer(work_dir: Path) -> None:
    root = work_dir / "compose-pgbouncer-no-writer"
    give_to_service_user(root)
    result = subprocess.run(start_pgbouncer_script(root, "nobody", "ROUTE_WAIT_SECONDS=1"),
                            capture_output=True, text=True, timeout=20, check=False)
    assert result.returncode == 1
    assert "neither postgres nor postgres-replica is a writer after 1s" in result.stderr
    assert not (root / "databases.ini").exists()


def test_aws_init_creates_what_the_services_use(moto_url: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location(
        "compose_aws_init", DEPLOY / "aws-init" / "create_resources.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    assert module.main() == 0
    assert module.main() == 0  # idempotent
    assert module.MAX_RECEIVES == lab_aws.MAX_RECEIVES

    settings = env("catalog")
    sqs = boto3.client("sqs", endpoint_url=moto_url, region_name="us-east-1")
    queue_name = settings["SHOP_ORDER_QUEUE_URL"].rsplit("/", 1)[1]
    queue_url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    redrive = json.loads(sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == 10
    assert redrive["deadLetterTargetArn"].endswith(f":{queue_name}-dlq")
    dynamodb = boto3.client("dynamodb", endpoint_url=moto_url, region_name="us-east-1")
    catalog = dynamodb.describe_table(TableName=settings["SHOP_PRODUCT_CACHE_TABLE"])["Table"]
    assert catalog["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert catalog["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "N"}]
    # the order table as the lab makes it: its sparse index of undecided orders included
    orders = dynamodb.describe_table(TableName=settings["SHOP_ORDER_STATUS_TABLE"])["Table"]
    assert orders["KeySchema"] == lab_aws.ORDER_TABLE["KeySchema"]
    assert orders["AttributeDefinitions"] == lab_aws.ORDER_TABLE["AttributeDefinitions"]
    (index,) = orders["GlobalSecondaryIndexes"]
    (wanted,) = lab_aws.ORDER_TABLE["GlobalSecondaryIndexes"]
    assert index["IndexName"] == wanted["IndexName"] == UNDECIDED_INDEX
    assert index["KeySchema"] == wanted["KeySchema"]
    # the same names the lab creates
    lab = lab_aws.create_resources(moto_url)
    assert (lab.queue_url.rsplit("/", 1)[1], lab.cache_table, lab.status_table) == (
        queue_name, settings["SHOP_PRODUCT_CACHE_TABLE"], settings["SHOP_ORDER_STATUS_TABLE"])


def test_the_compose_target_knows_the_published_ports() -> None:
    ports = ComposePorts()
    assert published("nginx")[8080] == ports.entry
    assert published("catalog")[8000] == ports.catalog
    assert tuple(published(replica)[8000] for replica in ORDERS_FLEET) == ports.orders
    assert published("order-worker")[8081] == ports.worker
    assert published("postgres")[5432] == ports.postgres
    assert published("postgres-replica")[5432] == ports.replica
    assert published("pgbouncer")[6432] == ports.pgbouncer
    assert published("moto")[5000] == ports.moto


def _compose_command() -> list[str] | None:
    """docker's compose plugin, or a standalone docker-compose v2; None when neither works."""
    for command in (["docker", "compose"], ["docker-compose"]):
        try:
            version = subprocess.run([*command, "version"], capture_output=True, text=True,
                                     timeout=20, check=False)
        except FileNotFoundError:
            continue
        if version.returncode == 0 and "v2." in version.stdout:
            return command
    return None


def test_docker_compose_accepts_the_file() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("no docker compose v2 here (neither the docker plugin nor docker-compose)")
    base = {"PATH": os.environ["PATH"], "HOME": str(Path.home())}
    passwords = {variable: "checking" for variable in PASSWORDS}
    # --project-directory: a .env of the working tree must not stand in for the variables
    project = ["-f", str(ROOT / "docker-compose.yml"), "--project-directory", str(ROOT / "tests")]
    for profile in ([], ["--profile", "load"], ["--profile", "observability"]):
        result = subprocess.run([*command, *project, *profile, "config", "-q"],
                                capture_output=True, text=True, timeout=60, check=False,
                                env={**base, **passwords})
        assert result.returncode == 0, result.stderr
    # each password is required: without one, compose refuses and names it
    for variable in sorted(PASSWORDS):
        result = subprocess.run([*command, *project, "config", "-q"], capture_output=True,
                                text=True, timeout=60, check=False,
                                env={**base, **passwords, variable: ""})
        assert result.returncode != 0 and variable in result.stderr, (variable, result.stderr)
