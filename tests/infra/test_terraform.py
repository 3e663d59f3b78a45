"""The Terraform of infra/, read as data (python-hcl2): every reference resolves, the security
group chain admits nothing wider than internet -> ALB -> tasks -> proxy -> Aurora, the ALB
routes, the two switches change what they should, each FIS template targets what it claims,
the tasks read the rotating database secret themselves, the orders tasks alone get the API key
secret, the services behind the ALB believe X-Forwarded-For from its subnets only, the
failed-orders alarm counts the worker's own log line, and the task definitions' environment
speaks the services' own settings names.

``scripts/check-infra.sh`` runs ``terraform validate`` and ``plan`` (offline, against the
provider's schema); these tests check what a plan cannot: that the wiring means what it should.
They need neither AWS nor PostgreSQL."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from chaos_lab.targets.aws import REQUIRED_OUTPUTS
from shop.serve import parser as serve_parser
from shop.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MODULES = sorted(p for p in (INFRA / "modules").iterdir() if p.is_dir())
ALL_MODULE_DIRS = [INFRA, *MODULES]

# Keys of a module call that are meta-arguments, not variables.
META_ARGUMENTS = {"source", "version", "for_each", "count", "depends_on", "providers"}


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return value[1:-1]
    return value


def _clean(node: Any) -> Any:
    """python-hcl2 keeps the quotes of strings and labels and adds marker keys: drop both."""
    if isinstance(node, dict):
        return {_unquote(k): _clean(v) for k, v in node.items() if not k.startswith("__")}
    if isinstance(node, list):
        return [_clean(v) for v in node]
    if isinstance(node, str):
        return _unquote(node)
    return node


@dataclass
class Module:
    path: Path
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    data: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)
    text: str = ""

    def resource(self, kind: str, name: str) -> dict[str, Any]:
        return self.resources[(kind, name)]

    def of_kind(self, kind: str) -> dict[str, dict[str, Any]]:
        return {name: body for (k, name), body in self.resources.items() if k == kind}


@cache
def load(path: Path) -> Module:
    module = Module(path)
    for tf in sorted(path.glob("*.tf")):
        raw = tf.read_text()
        module.text += raw
        module.comments += re.findall(r"#(checkov:[^\n]*)", raw)
        parsed = _clean(hcl2.loads(raw))
        for block in parsed.get("variable", []):
            module.variables.update(block)
        for block in parsed.get("locals", []):
            module.locals.update(block)
        for block in parsed.get("output", []):
            module.outputs.update(block)
        for block in parsed.get("module", []):
            module.modules.update(block)
        for section, target in (("resource", module.resources), ("data", module.data)):
            for block in parsed.get(section, []):
                for kind, named in block.items():
                    for name, body in named.items():
                        target[(kind, name)] = body
    return module


def root() -> Module:
    return load(INFRA)


def sub(name: str) -> Module:
    return load(INFRA / "modules" / name)


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)
    elif isinstance(node, str):
        yield node


def expressions(node: Any) -> Iterator[str]:
    """Strings that carry Terraform expressions (interpolations)."""
    return (s for s in strings(node) if "${" in s)


def squash(expr: str) -> str:
    return re.sub(r"\s+", "", expr)


def module_call(name: str) -> dict[str, Any]:
    return root().modules[name]


@dataclass(frozen=True)
class Plan:
    ok: bool
    output: str


def variable_blocks(text: str, names: set[str]) -> str:
    """The `variable "<name>" { ... }` blocks of these names, as written."""
    found = []
    for match in re.finditer(r'^variable "([\w-]+)" \{', text, re.M):
        if match.group(1) not in names:
            continue
        depth, end = 0, match.end() - 1
        for end in range(match.end() - 1, len(text)):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            if depth == 0:
                break
        found.append(text[match.start():end + 1])
    assert len(found) == len(names), f"not all of {names} found"
    return "\n\n".join(found) + "\n"


@cache
def _variables_only(path: Path, names: frozenset[str] | None, tmp: Path) -> Path:
    """A copy of the module's variables (all of them, or these) alone: a configuration with no
    resource needs no provider, so the real terraform evaluates its validations offline."""
    work = tmp / f"{path.name}-{abs(hash(names))}"
    work.mkdir(parents=True, exist_ok=True)
    text = (path / "variables.tf").read_text()
    (work / "variables.tf").write_text(text if names is None else variable_blocks(text, names))
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
    subprocess.run(["terraform", "init", "-backend=false", "-input=false", "-no-color"],
                   cwd=work, env=env, capture_output=True, text=True, timeout=120, check=True)
    return work


def plan_variables(path: Path, tmp: Path, names: set[str] | None = None,
                   **values: str) -> Plan:
    """`terraform plan` of the module's variables (all, or these) with these -var values: do
    they pass the variables' validation blocks, and what does terraform say?"""
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not installed")
    work = _variables_only(path, None if names is None else frozenset(names), tmp)
    args = [arg for name, value in values.items() for arg in ("-var", f"{name}={value}")]
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
    done = subprocess.run(["terraform", "plan", "-input=false", "-no-color", "-lock=false",
                           *args], cwd=work, env=env, capture_output=True, text=True,
                          timeout=120)
    return Plan(done.returncode == 0, re.sub(r"\s+", " ", done.stdout + done.stderr))


@pytest.fixture(scope="module")
def tf_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tf-variables")


# Every module is complete and documented --------------------------------------------------


@pytest.mark.parametrize("path", ALL_MODULE_DIRS, ids=lambda p: p.name)
def test_module_has_the_four_files(path: Path) -> None:
    for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf"):
        assert (path / name).is_file(), f"{path.relative_to(ROOT)} lacks {name}"


@pytest.mark.parametrize("path", ALL_MODULE_DIRS, ids=lambda p: p.name)
def test_every_variable_has_description_and_type(path: Path) -> None:
    module = load(path)
    assert module.variables, f"{path.name} declares no variable"
    for name, spec in module.variables.items():
        assert spec.get("description"), f"{path.name}: variable {name} has no description"
        assert spec.get("type"), f"{path.name}: variable {name} has no type"


@pytest.mark.parametrize("path", ALL_MODULE_DIRS, ids=lambda p: p.name)
def test_every_output_is_described(path: Path) -> None:
    for name, spec in load(path).outputs.items():
        assert spec.get("description"), f"{path.name}: output {name} has no description"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_outputs_go_through_try(path: Path) -> None:
    """terraform-aws-modules style: an output never fails the plan of its caller."""
    for name, spec in load(path).outputs.items():
        value = squash(str(spec["value"]))
        assert value.startswith("${try(") or value.startswith("${{for") \
            or value.startswith("${local."), f"{path.name}: output {name} = {value}"


def test_inputs_are_validated() -> None:
    validated = [n for n, v in root().variables.items() if v.get("validation")]
    for name in ("name", "region", "image_tag", "az_count", "aws_api_access",
                 "queue_visibility_timeout_seconds", "db_outage_seconds", "certificate_arn"):
        assert name in validated, f"variable {name} has no validation block"


def test_every_checkov_skip_gives_a_reason() -> None:
    for path in ALL_MODULE_DIRS:
        for comment in load(path).comments:
            match = re.fullmatch(r"checkov:skip=(CKV2?_AWS_\d+):(.+)", comment.strip())
            assert match, f"{path.name}: malformed checkov comment {comment!r}"
            assert len(match.group(2).split()) >= 4, f"{path.name}: {comment!r} gives no reason"


@pytest.mark.parametrize("path", ALL_MODULE_DIRS, ids=lambda p: p.name)
def test_terraform_1_9_and_aws_provider_6_37(path: Path) -> None:
    """>= 1.9: validations that compare two variables (fleet_crash_after_seconds against
    db_outage_seconds). Provider 6.37 to 7: data.aws_region's `region` attribute, and a working
    global_secondary_index.key_schema (the undecided index; hash_key/range_key there are
    deprecated); below 7, a major version is a reviewed upgrade."""
    (block,) = _clean(hcl2.loads((path / "versions.tf").read_text()))["terraform"]
    assert block["required_version"] == ">= 1.9", path.name
    (providers,) = block["required_providers"]
    assert providers["aws"] == {"source": "hashicorp/aws", "version": ">= 6.37, < 7.0"}, \
        path.name


@pytest.mark.parametrize("path", ALL_MODULE_DIRS, ids=lambda p: p.name)
def test_no_deprecated_region_name(path: Path) -> None:
    assert not re.search(r"data\.aws_region\.\w+\.name\b", load(path).text), \
        f"{path.name}: data.aws_region's name is deprecated in provider v6, use .region"


# Every reference resolves -----------------------------------------------------------------


REFERENCE = {
    "var": re.compile(r"(?<![\w.])var\.([A-Za-z_][\w-]*)"),
    "local": re.compile(r"(?<![\w.])local\.([A-Za-z_][\w-]*)"),
    "module": re.compile(r"(?<![\w.])module\.([A-Za-z_][\w-]*)"),
    "data": re.compile(r"(?<![\w.])data\.([a-z0-9_]+)\.([A-Za-z_][\w-]*)"),
    "resource": re.compile(r"(?<![\w.])(aws_[a-z0-9_]+)\.([A-Za-z_][\w-]*)"),
}


def references(module: Module) -> dict[str, set[Any]]:
    found: dict[str, set[Any]] = {kind: set() for kind in REFERENCE}
    everything = [module.variables, module.locals, module.outputs, module.modules,
                  list(module.resources.values()), list(module.data.values())]
    for expr in expressions(everything):
        for kind, pattern in REFERENCE.items():
            for match in pattern.finditer(expr):
                found[kind].add(match.groups() if kind in ("data", "resource") else match.group(1))
    return found


@pytest.mark.parametrize("path", ALL_MODULE_DIRS, ids=lambda p: p.name)
def test_every_reference_resolves_within_its_module(path: Path) -> None:
    module = load(path)
    refs = references(module)
    assert refs["var"] <= set(module.variables), \
        f"{path.name}: undeclared variables {refs['var'] - set(module.variables)}"
    assert refs["local"] <= set(module.locals), \
        f"{path.name}: undeclared locals {refs['local'] - set(module.locals)}"
    assert refs["module"] <= set(module.modules), \
        f"{path.name}: unknown modules {refs['module'] - set(module.modules)}"
    assert refs["data"] <= set(module.data), \
        f"{path.name}: unknown data sources {refs['data'] - set(module.data)}"
    assert refs["resource"] <= set(module.resources), \
        f"{path.name}: unknown resources {refs['resource'] - set(module.resources)}"


def test_reference_check_can_fail() -> None:
    """The scanner sees references inside interpolations, for expressions and jsonencode."""
    module = Module(INFRA, locals={"x": "${jsonencode({a = var.nope, b = aws_lb.gone.arn})}"})
    refs = references(module)
    assert "nope" in refs["var"]
    assert ("aws_lb", "gone") in refs["resource"]


@pytest.mark.parametrize("name", sorted(load(INFRA).modules))
def test_module_call_matches_the_module_variables(name: str) -> None:
    call = module_call(name)
    source = call["source"]
    assert source.startswith("./modules/"), f"module {name}: only local modules ({source})"
    target = load((INFRA / source).resolve())
    passed = set(call) - META_ARGUMENTS
    declared = set(target.variables)
    required = {v for v, spec in target.variables.items() if "default" not in spec}
    assert passed <= declared, f"module {name} passes undeclared {passed - declared}"
    assert required <= passed, f"module {name} misses required {required - passed}"


@pytest.mark.parametrize("name", sorted(load(INFRA).modules))
def test_module_call_uses_only_outputs_that_exist(name: str) -> None:
    used: set[tuple[str, str]] = set()
    for expr in expressions([root().locals, root().modules, root().outputs]):
        used |= set(re.findall(r"(?<![\w.])module\.([\w-]+)(?:\[[^\]]*\])?\.(\w+)", expr))
    target = load((INFRA / module_call(name)["source"]).resolve())
    for module_name, output in used:
        if module_name == name:
            assert output in target.outputs, f"module.{name}.{output} is not an output"


# Security groups: internet -> ALB -> tasks -> proxy -> Aurora, nothing wider --------------


@dataclass(frozen=True)
class Rule:
    direction: str
    group: str
    source: str  # "sg:<name>" or the CIDR
    from_port: Any
    to_port: Any
    count: str | None


def _group(expression: str) -> str:
    """A group of this module (aws_security_group.<name>.id) or the interface endpoints' one,
    which the network module makes (var.endpoints_security_group_id)."""
    if expression == "${var.endpoints_security_group_id}":
        return "endpoints"
    found = re.search(r"aws_security_group\.(\w+)\.id", expression)
    assert found, expression
    return found.group(1)


def _peer(body: dict[str, Any]) -> str:
    if "referenced_security_group_id" in body:
        return f"sg:{_group(body['referenced_security_group_id'])}"
    if "prefix_list_id" in body:
        return "prefix-list:" + body["prefix_list_id"]
    return str(body.get("cidr_ipv4") or body.get("cidr_ipv6") or "?")


def sg_rules() -> list[Rule]:
    module = sub("security_groups")
    rules = []
    for direction in ("ingress", "egress"):
        for body in module.of_kind(f"aws_vpc_security_group_{direction}_rule").values():
            rules.append(Rule(direction, _group(body["security_group_id"]), _peer(body),
                              body.get("from_port"), body.get("to_port"),
                              body.get("count") or body.get("for_each")))
    return rules


def ingress(group: str) -> list[Rule]:
    return [r for r in sg_rules() if r.direction == "ingress" and r.group == group]


def test_security_groups_have_no_inline_rules() -> None:
    for path in ALL_MODULE_DIRS:
        for name, body in load(path).of_kind("aws_security_group").items():
            assert "ingress" not in body and "egress" not in body, \
                f"{path.name}: aws_security_group.{name} has inline rules"


def test_only_the_alb_is_open_to_the_internet_on_80_and_443() -> None:
    for path in ALL_MODULE_DIRS:
        module = load(path)
        for kind in ("aws_vpc_security_group_ingress_rule", "aws_security_group_rule"):
            for name, body in module.of_kind(kind).items():
                cidr = body.get("cidr_ipv4") or body.get("cidr_ipv6") or body.get("cidr_blocks")
                if cidr and ("0.0.0.0/0" in str(cidr) or "::/0" in str(cidr)):
                    assert path.name == "security_groups" and "aws_security_group.alb" in \
                        body["security_group_id"], f"{path.name}: {name} open to the internet"
                    assert (body["from_port"], body["to_port"]) in ((80, 80), (443, 443)), name
    alb = ingress("alb")
    assert {r.from_port for r in alb} == {80, 443}
    assert all(r.source == "0.0.0.0/0" for r in alb)
    https = next(r for r in alb if r.from_port == 443)
    assert https.count and "var.https" in https.count, "443 only when a certificate is set"


def test_tasks_admit_only_the_alb() -> None:
    rules = ingress("tasks")
    assert [r.source for r in rules] == ["sg:alb"]
    assert rules[0].from_port == rules[0].to_port == "${var.container_port}"


def test_proxy_admits_only_the_tasks_on_postgres() -> None:
    rules = ingress("proxy")
    assert [r.source for r in rules] == ["sg:tasks"]
    assert rules[0].from_port == rules[0].to_port == "${var.database_port}"
    assert sub("security_groups").variables["database_port"]["default"] == 5432


def test_aurora_admits_the_proxy_and_the_tasks_only_without_proxy() -> None:
    rules = {r.source: r for r in ingress("database")}
    assert set(rules) == {"sg:proxy", "sg:tasks"}
    assert rules["sg:proxy"].count is None, "the proxy always reaches Aurora"
    assert squash(rules["sg:tasks"].count or "") == "${var.enable_proxy?0:1}", \
        "tasks reach Aurora directly only in the fragile deployment"
    for rule in rules.values():
        assert rule.from_port == rule.to_port == "${var.database_port}"


def test_egress_follows_the_chain() -> None:
    egress = {(r.group, r.source): r for r in sg_rules() if r.direction == "egress"}
    gateways = "prefix-list:${var.gateway_prefix_list_ids[each.key]}"
    assert set(egress) == {("alb", "sg:tasks"), ("tasks", "sg:proxy"), ("tasks", "sg:database"),
                           ("tasks", "sg:endpoints"), ("tasks", gateways),
                           ("tasks", "0.0.0.0/0"), ("proxy", "sg:database")}
    for peer in ("sg:endpoints", gateways, "0.0.0.0/0"):
        assert egress[("tasks", peer)].from_port == egress[("tasks", peer)].to_port == 443
    assert squash(egress[("tasks", "sg:database")].count or "") == "${var.enable_proxy?0:1}"


def test_each_tier_gets_its_own_security_group() -> None:
    wiring = {
        "alb": ("security_group_id", "alb_security_group_id"),
        "rds_proxy": ("security_group_id", "proxy_security_group_id"),
        "aurora": ("security_group_id", "database_security_group_id"),
        "service": ("security_group_ids", "tasks_security_group_id"),
    }
    for name, (argument, output) in wiring.items():
        assert f"module.security_groups.{output}" in str(module_call(name)[argument]), name
    assert module_call("security_groups")["enable_proxy"] == "${var.enable_proxy}"


def test_nothing_gets_a_public_ip() -> None:
    network = sub("network")
    assert network.resource("aws_subnet", "public")["map_public_ip_on_launch"] is False
    service = sub("ecs_service").resource("aws_ecs_service", "this")
    assert service["network_configuration"][0]["assign_public_ip"] is False
    assert module_call("service")["subnet_ids"] == "${module.network.private_subnet_ids}"
    for name in ("aurora", "rds_proxy"):
        assert module_call(name)["subnet_ids"] == "${module.network.private_subnet_ids}"
    assert module_call("alb")["subnet_ids"] == "${module.network.public_subnet_ids}"


# The load balancer ------------------------------------------------------------------------


def test_alb_routes_products_to_catalog_and_orders_to_orders() -> None:
    services = root().locals["services"]
    assert services["catalog"]["path_patterns"] == ["/products*"]
    assert services["orders"]["path_patterns"] == ["/orders*"]
    assert services["order-worker"]["path_patterns"] == [], "the worker has no load balancer"
    assert module_call("alb")["routes"] == "${local.routes}"
    assert "length(s.path_patterns)>0" in squash(root().locals["routes"])
    rule = sub("alb").resource("aws_lb_listener_rule", "this")
    assert rule["for_each"] == "${var.routes}"
    assert rule["action"][0]["type"] == "forward"
    assert rule["action"][0]["target_group_arn"] == "${aws_lb_target_group.this[each.key].arn}"
    assert rule["condition"][0]["path_pattern"][0]["values"] == "${each.value.path_patterns}"
    assert rule["listener_arn"] == "${local.listener_arn}"


def test_target_groups_probe_the_cheap_health_route_on_8000() -> None:
    group = sub("alb").resource("aws_lb_target_group", "this")
    assert group["health_check"][0]["path"] == "${var.health_check_path}"
    assert group["health_check"][0]["matcher"] == "200"
    assert group["port"] == "${var.container_port}" and group["target_type"] == "ip"
    assert module_call("alb")["health_check_path"] == "/health"
    assert root().locals["container_port"] == 8000


@pytest.mark.parametrize(("values", "accepted"), [
    ({}, False),  # the default: no certificate, no explicit lab
    ({"allow_plain_http_for_lab": "true"}, True),
    ({"certificate_arn": "arn:aws:acm:eu-west-1:123456789012:certificate/x"}, True),
    ({"certificate_arn": "not-an-arn", "allow_plain_http_for_lab": "true"}, False),
])
def test_https_is_required_unless_a_lab_says_so(
        tf_tmp: Path, values: dict[str, str], accepted: bool) -> None:
    """Issue 21, item 4: a plan without a certificate is refused with a message that says what
    to do, unless allow_plain_http_for_lab = true is set explicitly."""
    plan = plan_variables(INFRA, tf_tmp, image_tag="t", **values)
    assert plan.ok is accepted, plan.output
    if not values:
        assert "certificate_arn is required" in plan.output
        assert "allow_plain_http_for_lab = true" in plan.output
    assert root().variables["allow_plain_http_for_lab"]["default"] is False
    assert root().variables["certificate_arn"]["default"] is None


def test_the_examples_serve_https() -> None:
    example = _clean(hcl2.loads((INFRA / "terraform.tfvars.example").read_text()))
    assert example["certificate_arn"].startswith("arn:aws:acm:")
    assert "allow_plain_http_for_lab" not in example


def test_alb_logs_every_request_and_refuses_deletion() -> None:
    alb = sub("alb").resource("aws_lb", "this")
    assert alb["enable_deletion_protection"] == "${var.deletion_protection}"
    assert alb["drop_invalid_header_fields"] is True
    (logs,) = alb["access_logs"]
    assert logs == {"bucket": "${var.access_logs_bucket}", "prefix": "${var.access_logs_prefix}",
                    "enabled": True}
    call = module_call("alb")
    assert call["deletion_protection"] == "${var.deletion_protection}"
    assert call["access_logs_bucket"] == "${module.alb_logs.bucket}"
    bucket_call = module_call("alb_logs")
    assert bucket_call["source"] == "./modules/log_bucket"
    assert bucket_call["elb_log_prefix"] == call["access_logs_prefix"] == "alb"
    assert "kms_key_arn" not in bucket_call, "ALB log delivery writes to SSE-S3 buckets only"


def test_log_buckets_are_private_versioned_encrypted_tls_only_and_expire() -> None:
    bucket = sub("log_bucket")
    assert bucket.resource("aws_s3_bucket", "this")["force_destroy"] is False
    block = bucket.resource("aws_s3_bucket_public_access_block", "this")
    for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                 "restrict_public_buckets"):
        assert block[flag] is True, flag
    versioning = bucket.resource("aws_s3_bucket_versioning", "this")
    assert versioning["versioning_configuration"] == [{"status": "Enabled"}]
    sse = bucket.resource("aws_s3_bucket_server_side_encryption_configuration", "this")
    default = sse["rule"][0]["apply_server_side_encryption_by_default"][0]
    assert default["sse_algorithm"] == '${local.kms ? "aws:kms" : "AES256"}'
    (rule,) = bucket.resource("aws_s3_bucket_lifecycle_configuration", "this")["rule"]
    assert rule["expiration"] == [{"days": "${var.expiration_days}"}]
    assert rule["noncurrent_version_expiration"] == [
        {"noncurrent_days": "${var.noncurrent_expiration_days}"}]
    assert rule["abort_incomplete_multipart_upload"] == [{"days_after_initiation": 7}]
    policy = squash(bucket.resource("aws_s3_bucket_policy", "this")["policy"])
    assert 'Effect="Deny"' in policy and '"aws:SecureTransport"="false"' in policy
    assert 'Action="s3:PutObject"' in policy and "Resource=local.elb_objects" in policy
    assert bucket.resource("aws_s3_bucket_ownership_controls", "this")["rule"] == [
        {"object_ownership": "BucketOwnerEnforced"}]


def test_https_with_a_certificate_and_http_redirects() -> None:
    alb = sub("alb")
    assert squash(alb.locals["https"]) == "${var.certificate_arn!=null}"
    https = alb.resource("aws_lb_listener", "https")
    assert squash(https["count"]) == "${local.https?1:0}"
    assert https["protocol"] == "HTTPS" and https["port"] == 443
    assert "TLS13" in alb.variables["ssl_policy"]["default"]
    http = alb.resource("aws_lb_listener", "http")
    redirect = next(d["default_action"] for d in http["dynamic"]
                    if d["default_action"]["content"][0]["type"] == "redirect")
    assert squash(redirect["for_each"]) == "${local.https?[1]:[]}"
    assert redirect["content"][0]["redirect"][0]["protocol"] == "HTTPS"
    assert squash(alb.locals["listener_arn"]) == \
        "${local.https?aws_lb_listener.https[0].arn:aws_lb_listener.http.arn}"
    assert module_call("alb")["certificate_arn"] == "${var.certificate_arn}"


# The two switches -------------------------------------------------------------------------


def test_enable_proxy_switches_the_database_urls() -> None:
    endpoints = root().locals["database_endpoints"]
    assert endpoints["proxy"] == {"writer": "${module.rds_proxy.endpoint}",
                                  "reader": "${module.rds_proxy.reader_endpoint}"}
    assert endpoints["direct"] == {"writer": "${module.aurora.writer_endpoint}",
                                   "reader": "${module.aurora.reader_endpoint}"}
    assert squash(root().locals["database_endpoint"]) == \
        '${local.database_endpoints[var.enable_proxy?"proxy":"direct"]}'
    for login, pair in database_url_templates().items():
        assert "@${local.database_endpoint.writer}:5432/" in pair["SHOP_DATABASE_URL"], login
        if "SHOP_DATABASE_READER_URL" in pair:
            assert "@${local.database_endpoint.reader}:5432/" in pair["SHOP_DATABASE_READER_URL"]
    assert root().locals["common_environment"]["SHOP_ENABLE_PROXY"] == \
        "${tostring(var.enable_proxy)}"


# Every URL a task gets verifies the server: asyncpg reads sslmode and sslrootcert from the DSN.
VERIFIED_TLS = "?sslmode=verify-full&sslrootcert=/etc/ssl/certs/rds-global-bundle.pem"


def database_url_templates() -> dict[str, dict[str, str]]:
    """local.database_urls as login -> {name: URL template}: the owner's, and the pair every
    app role gets, written once as a for expression (its `${role}` stands for each role)."""
    text = root().locals["database_urls"]
    found: dict[str, dict[str, str]] = {}
    owner = re.search(r"owner = \{(.*?)\}\}", text)
    assert owner, text
    found["owner"] = dict(re.findall(r'(SHOP_\w+) = "([^"]+)"', owner.group(1)))
    per_role = re.search(r"\{for role in local\.database_roles : role => \{(.*?)\}\}", text)
    assert per_role, "one pair of URLs per app role"
    found["${role}"] = dict(re.findall(r'(SHOP_\w+) = "([^"]+)"', per_role.group(1)))
    return found


def rendered_url(template: str) -> str:
    """The URL with the TLS locals filled in (endpoints and the database stay symbolic)."""
    return template.replace("${local.database_tls}", root().locals["database_tls"]) \
        .replace("${local.database_ca_bundle}", root().locals["database_ca_bundle"])


def test_database_urls_verify_the_server_and_carry_no_password() -> None:
    urls = database_url_templates()
    assert set(urls["owner"]) == {"SHOP_DATABASE_URL"}, "the migrate step only writes"
    assert set(urls["${role}"]) == {"SHOP_DATABASE_URL", "SHOP_DATABASE_READER_URL"}
    for pair in urls.values():
        for template in pair.values():
            url = rendered_url(template)
            assert url.endswith(VERIFIED_TLS), url
            assert url.count("sslmode=") == 1, url
            assert re.match(r"postgresql://\$\{[^}]+\}@", url), f"a password in {url}?"
    # Nothing else hands a task a database URL.
    for name, value in root().locals.items():
        if name != "database_urls":
            assert "postgresql://" not in str(value), name
    proxy = sub("rds_proxy").resource("aws_db_proxy", "this")
    assert proxy["require_tls"] is True
    parameters = sub("aurora").resource("aws_rds_cluster_parameter_group", "this")["parameter"]
    assert {"name": "rds.force_ssl", "value": "1"} in parameters


def test_url_check_can_fail() -> None:
    assert not rendered_url("postgresql://${role}@h:5432/shop?sslmode=require").endswith(
        VERIFIED_TLS)


def test_the_ca_bundle_of_the_urls_is_the_one_every_image_ships() -> None:
    bundle = root().locals["database_ca_bundle"]
    assert bundle == "/etc/ssl/certs/rds-global-bundle.pem"
    for name, spec in root().locals["services"].items():
        dockerfile = (ROOT / spec["dockerfile"]).read_text()
        assert re.search(rf"^ADD \$\{{RDS_CA_BUNDLE\}} {re.escape(bundle)}$", dockerfile,
                         re.M), name


def test_enable_degradation_switches_queue_cache_and_worker() -> None:
    services = root().locals["services"]
    assert services["order-worker"]["needs_degradation"] is True
    assert services["catalog"]["needs_degradation"] is False
    assert services["orders"]["needs_degradation"] is False
    deployed = squash(root().locals["deployed_services"])
    assert "ifvar.enable_degradation||!s.needs_degradation" in deployed
    call = module_call("service")
    assert call["for_each"] == "${local.deployed_services}"
    assert "var.enable_degradation?local.degradation_environment[each.key]:{}" in \
        squash(call["environment"])
    assert "var.enable_degradation?local.task_policies[each.key]:null" in \
        squash(call["task_policy_json"])
    degradation = root().locals["degradation_environment"]
    assert set(degradation["catalog"]) == {"SHOP_PRODUCT_CACHE_TABLE"}
    assert set(degradation["orders"]) == {"SHOP_ORDER_QUEUE_URL", "SHOP_ORDER_STATUS_TABLE"}
    assert set(degradation["order-worker"]) == {"SHOP_ORDER_QUEUE_URL", "SHOP_ORDER_STATUS_TABLE"}
    common = root().locals["common_environment"]
    for name in ("SHOP_ORDER_QUEUE_URL", "SHOP_PRODUCT_CACHE_TABLE", "SHOP_ORDER_STATUS_TABLE"):
        assert name not in common, f"{name} must come only with enable_degradation"
    assert common["SHOP_ENABLE_DEGRADATION"] == "${tostring(var.enable_degradation)}"
    assert module_call("fis")["services"] == "${keys(local.deployed_services)}"


# Task definitions speak the services' settings ------------------------------------------


def environment_names() -> set[str]:
    names: set[str] = set()
    for local in ("database_urls", "database_environment", "migrate_environment",
                  "common_environment", "service_environment", "degradation_environment"):
        text = str(root().locals[local])
        names |= set(re.findall(r"\b([A-Z][A-Z0-9]*_[A-Z0-9_]+)\b\s*['\"]?\s*[=:]", text))
    return names


# Read by uvicorn itself (shop.serve leaves it to the environment), not by shop.settings.
UVICORN_ENVIRONMENT = {"FORWARDED_ALLOW_IPS"}


def test_environment_names_are_settings_fields_or_aws() -> None:
    allowed = {f"SHOP_{name.upper()}" for name in Settings.model_fields} | UVICORN_ENVIRONMENT
    names = environment_names()
    unknown = {n for n in names if n not in allowed and not n.startswith("AWS_")}
    assert not unknown, f"not a field of shop.settings.Settings: {unknown}"
    assert {"SHOP_DATABASE_URL", "SHOP_DATABASE_READER_URL", "SHOP_DATABASE_SECRET_ARN",
            "SHOP_ENABLE_PROXY", "SHOP_ENABLE_DEGRADATION", "SHOP_ORDER_QUEUE_URL",
            "SHOP_PRODUCT_CACHE_TABLE", "SHOP_ORDER_STATUS_TABLE", "SHOP_MIGRATE",
            "SHOP_ROLE_SECRETS"} <= names


def test_environment_name_check_can_fail() -> None:
    allowed = {f"SHOP_{name.upper()}" for name in Settings.model_fields}
    assert "SHOP_DATABASE_URL" in allowed
    assert "SHOP_DB_URL" not in allowed and "SHOP_QUEUE_URL" not in allowed


def test_containers_get_only_the_environment_they_are_given() -> None:
    service = sub("ecs_service")
    task = service.resource("aws_ecs_task_definition", "this")
    container = squash(task["container_definitions"])
    assert "environment=local.environment" in container
    assert "secrets=local.secrets" in container
    assert "var.environment" in service.locals["environment"]
    assert "var.secrets" in service.locals["secrets"]
    assert not re.search(r"\bSHOP_[A-Z_]+", service.text), "names belong to the root module"


def test_worker_and_web_ports_match_the_services() -> None:
    services = root().locals["services"]
    assert services["catalog"]["port"] == services["orders"]["port"] == "${local.container_port}"
    assert services["order-worker"]["port"] == Settings().worker_health_port == 8081
    assert module_call("service")["health_check_port"] == "${each.value.port}"


def test_images_map_to_the_services_dockerfiles() -> None:
    services = root().locals["services"]
    assert module_call("ecr")["repositories"] == "${keys(local.images)}"
    images = squash(root().locals["images"])
    assert "{forname,sinlocal.services:name=>{dockerfile=s.dockerfile,context=\".\"}}" in images
    assert "module.ecr.repository_urls[each.key]" in module_call("service")["image"]
    missing = [s["dockerfile"] for s in services.values()
               if not (ROOT / s["dockerfile"]).is_file()]
    assert not missing, f"Dockerfiles referenced by infra/ do not exist: {missing}"
    for name, spec in services.items():
        assert spec["dockerfile"] == f"services/{name}/Dockerfile"


def test_deployments_roll_back_and_tasks_carry_the_fis_tag() -> None:
    service = sub("ecs_service").resource("aws_ecs_service", "this")
    breaker = service["deployment_circuit_breaker"][0]
    assert breaker == {"enable": True, "rollback": True}
    assert service["propagate_tags"] == "SERVICE"
    tags = squash(module_call("service")["tags"])
    assert "{Service=each.key,(local.fis_tag_key)=local.fis_tag_values[each.key]}" in tags


def test_autoscaling_on_cpu_and_the_worker_on_its_backlog() -> None:
    service = sub("ecs_service")
    cpu = service.resource("aws_appautoscaling_policy", "cpu")
    spec = cpu["target_tracking_scaling_policy_configuration"][0]
    assert spec["predefined_metric_specification"][0]["predefined_metric_type"] == \
        "ECSServiceAverageCPUUtilization"
    queue = service.resource("aws_appautoscaling_policy", "queue")
    assert squash(queue["count"]) == "${var.queue_scaling==null?0:1}"
    assert "ApproximateNumberOfMessagesVisible" in str(queue)
    assert "each.value.needs_degradation?{" in squash(module_call("service")["queue_scaling"])


# The database password: read by the tasks themselves, so a rotation needs no restart -------


MASTER_SECRET = "${module.aurora.master_user_secret_arn}"


def statements(policy: str) -> list[str]:
    """The statements of a jsonencode'd policy, squashed, one string each."""
    body = squash(policy)
    opening = re.search(r"Statement=(?:concat\()?\[", body)
    assert opening, body
    start = opening.end()
    found, depth, begin = [], 0, 0
    for i, char in enumerate(body[start:], start):
        if char == "{":
            begin = i if depth == 0 else begin
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                found.append(body[begin:i + 1])
        elif char == "]" and depth == 0:
            break
    return found


def test_no_task_is_handed_the_password_at_start() -> None:
    for path in ALL_MODULE_DIRS:
        assert "SHOP_DATABASE_PASSWORD" not in load(path).text, \
            f"{path.name}: the password is read at run time, never injected"
    call = module_call("service")
    # The one ECS secret is the API key secret (below): no database secret is read once at
    # start, which could not follow a rotation.
    assert call["secrets"] == "${lookup(local.service_secrets, each.key, {})}"
    assert call["secret_arns"] == "${values(lookup(local.service_secrets, each.key, {}))}"
    service_secrets = str(root().locals["service_secrets"])
    for database in ("module.aurora", "SHOP_DATABASE", "app_role_secret_arns"):
        assert database not in service_secrets, database
    service = sub("ecs_service")
    assert service.variables["secrets"]["default"] == {}
    assert service.variables["secret_arns"]["default"] == []
    execution = service.resource("aws_iam_role_policy", "execution_secrets")
    assert squash(execution["count"]) == "${length(var.secret_arns)>0?1:0}"


ROLES = {"catalog": "shop_catalog", "orders": "shop_orders", "order-worker": "shop_orders"}
ROLE_SECRET = "module.aurora.app_role_secret_arns"


def test_each_service_connects_as_its_own_role() -> None:
    services = root().locals["services"]
    assert {name: s["database_role"] for name, s in services.items()} == ROLES
    assert squash(root().locals["database_roles"]) == \
        "${toset([forsinvalues(local.services):s.database_role])}", \
        "every role, with or without the worker"
    environment = squash(root().locals["database_environment"])
    assert environment.startswith(
        "${{forname,sinlocal.services:name=>merge(local.database_urls[s.database_role],{")
    assert f"SHOP_DATABASE_SECRET_ARN={ROLE_SECRET}[s.database_role]" in environment
    assert 'SHOP_MIGRATE="false"' in environment, "the services wait for the schema"
    # The user of a role's URLs is that role; the owner's is the master user.
    urls = database_url_templates()
    for template in urls["${role}"].values():
        assert template.startswith("postgresql://${role}@"), template
    assert urls["owner"]["SHOP_DATABASE_URL"].startswith(
        "postgresql://${module.aurora.master_username}@")
    # Every service gets its role's environment, whatever the switches.
    assert squash(module_call("service")["environment"]).startswith(
        "${merge(local.database_environment[each.key],local.common_environment,")
    for name in ("common_environment", "degradation_environment"):
        text = str(root().locals[name])
        for database in ("SHOP_DATABASE_URL", "SHOP_DATABASE_SECRET_ARN", "SHOP_MIGRATE"):
            assert database not in text, f"{name} must not set {database}"


def test_the_orders_tasks_hold_each_client_to_a_quota() -> None:
    """Issue 21's per-client quota: on in the deployment, for the orders service alone."""
    assert root().locals["service_environment"] == {
        "catalog": {"FORWARDED_ALLOW_IPS": "${local.forwarded_allow_ips}"},
        "orders": {
            "FORWARDED_ALLOW_IPS": "${local.forwarded_allow_ips}",
            "SHOP_CLIENT_ORDERS_PER_SECOND": "${tostring(var.client_orders_per_second)}",
            "SHOP_CLIENT_ORDERS_BURST": "${tostring(var.client_orders_burst)}"}}
    assert "lookup(local.service_environment,each.key,{})" in \
        squash(module_call("service")["environment"])
    assert root().variables["client_orders_per_second"]["default"] > 0
    assert root().variables["client_orders_burst"]["default"] >= 1


# Signed API keys and the client's address (issue 21, item 3) --------------------------------


API_KEY_VERSION = "aws_secretsmanager_secret_version.api_key[0].arn"


def test_api_keys_are_required_by_default() -> None:
    variable = root().variables["require_api_keys"]
    assert variable["type"] == "bool" and variable["default"] is True
    assert "SHOP_API_KEY_SECRET" in variable["description"]
    assert "api_key_secret" in Settings.model_fields, "SHOP_API_KEY_SECRET: the service's name"


def test_the_api_key_secret_is_generated_once_encrypted_and_recoverable() -> None:
    """As the app roles' secrets are: Secrets Manager's generator (no random provider), the
    shop's key, the recovery window; with require_api_keys only."""
    secret = root().resource("aws_secretsmanager_secret", "api_key")
    password = root().data[("aws_secretsmanager_random_password", "api_key")]
    version = root().resource("aws_secretsmanager_secret_version", "api_key")
    for block in (secret, password, version):
        assert block["count"] == "${var.require_api_keys ? 1 : 0}"
    assert secret["kms_key_id"] == "${module.kms.key_arn}"
    assert secret["recovery_window_in_days"] == "${var.secret_recovery_window_days}"
    assert password["password_length"] >= 32 and password["exclude_punctuation"] is True
    assert version["secret_id"] == "${aws_secretsmanager_secret.api_key[0].id}"
    assert version["secret_string"] == \
        "${data.aws_secretsmanager_random_password.api_key[0].random_password}"
    assert version["lifecycle"] == [{"ignore_changes": ["secret_string"]}], \
        "a plan must not draw a new secret: it would void every key issued"


def rendered_secrets(require_api_keys: bool) -> dict[str, dict[str, str]]:
    """Each deployed service's ECS secrets as Terraform computes them from service_secrets and
    the module call's lookup (the secret's ARN written as API_KEY_VERSION)."""
    call = module_call("service")
    assert call["secrets"] == "${lookup(local.service_secrets, each.key, {})}"
    rendered: dict[str, dict[str, str]] = {}
    for name in root().locals["services"]:
        expression = root().locals["service_secrets"].get(name)
        if expression is None:
            rendered[name] = {}
            continue
        match = re.fullmatch(r"\$\{var\.require_api_keys \? \{(\w+) = ([\w.\[\]]+)\} : \{\}\}",
                             expression)
        assert match, expression
        rendered[name] = {match.group(1): match.group(2)} if require_api_keys else {}
    return rendered


def test_only_the_orders_task_definition_gets_the_api_key_secret() -> None:
    assert rendered_secrets(True) == {"catalog": {}, "order-worker": {},
                                      "orders": {"SHOP_API_KEY_SECRET": API_KEY_VERSION}}
    assert rendered_secrets(False) == {"catalog": {}, "order-worker": {}, "orders": {}}
    # ... as an ECS secret of the container, never in its environment.
    container = squash(sub("ecs_service").resource("aws_ecs_task_definition", "this")[
        "container_definitions"])
    assert "secrets=local.secrets" in container
    assert "valueFrom=var.secrets[k]" in squash(sub("ecs_service").locals["secrets"])
    holders = {name for name, value in root().locals.items() if "api_key" in str(value)}
    assert holders == {"service_secrets"}, holders
    for name, value in root().modules.items():
        assert "api_key" not in str(value), f"module.{name}: only through service_secrets"


def test_the_orders_execution_role_reads_the_api_key_secret_and_no_task_role_does() -> None:
    """The execution role starts the container with it; the task role (what the application's
    code and any injected code can call) never gets it from Secrets Manager."""
    assert module_call("service")["secret_arns"] == \
        "${values(lookup(local.service_secrets, each.key, {}))}"
    service = sub("ecs_service")
    policy = service.resource("aws_iam_role_policy", "execution_secrets")
    assert policy["role"] == "${aws_iam_role.execution.id}"
    assert squash(policy["count"]) == "${length(var.secret_arns)>0?1:0}"
    read, decrypt = statements(policy["policy"])
    assert 'Action=["secretsmanager:GetSecretValue"]' in read
    assert "Resource=var.secret_arns" in read
    assert "Resource=[var.kms_key_arn]" in decrypt
    assert '"kms:ViaService"="secretsmanager.' in decrypt
    task = service.resource("aws_iam_role_policy", "task_secrets")
    assert "var.secret_arns" not in str(task) and "Resource=var.task_secret_arns" in \
        squash(task["policy"])
    for text in root().locals["task_policies"].values():
        assert "api_key" not in text and "secretsmanager" not in text


@pytest.mark.parametrize(("values", "accepted"), [
    ({}, True),  # the default: API keys
    ({"require_api_keys": "false"}, True),
    ({"order_auth": '{mode="jwt",issuer="https://i/",jwks_endpoint="https://i/k"}'}, False),
    ({"order_auth": '{mode="jwt",issuer="https://i/",jwks_endpoint="https://i/k"}',
      "require_api_keys": "false"}, True),
])
def test_api_keys_and_order_auth_are_alternatives(tf_tmp: Path, values: dict[str, str],
                                                  accepted: bool) -> None:
    """Both read the Authorization header: the ALB forwards order_auth's token as is, which
    the orders service would refuse as an API key (401 for every order)."""
    cert = "arn:aws:acm:eu-west-1:123456789012:certificate/x"
    plan = plan_variables(INFRA, tf_tmp, image_tag="t", certificate_arn=cert, **values)
    assert plan.ok is accepted, plan.output
    if not accepted:
        assert "require_api_keys and order_auth cannot both be on" in plan.output
        assert "set require_api_keys = false" in plan.output


def test_the_operator_finds_the_api_key_secret_not_its_value() -> None:
    output = root().outputs["api_key_secret_arn"]
    assert output["value"] == "${try(aws_secretsmanager_secret.api_key[0].arn, null)}"
    assert "python -m shop.clients <client>" in output["description"]
    assert not output.get("sensitive")
    assert "secret_string" not in str(root().outputs) and "random_password" not in \
        str(root().outputs)


def test_the_services_behind_the_alb_believe_forwarded_for_from_its_subnets_only() -> None:
    assert root().locals["forwarded_allow_ips"] == \
        '${join(",", module.network.public_subnet_cidrs)}'
    network = sub("network")
    assert network.outputs["public_subnet_cidrs"]["value"] == \
        "${try(aws_subnet.public[*].cidr_block, [])}"
    assert network.resource("aws_subnet", "public")["cidr_block"] == \
        "${local.public_cidrs[count.index]}"
    # ... the subnets the ALB's nodes are in.
    assert module_call("alb")["subnet_ids"] == "${module.network.public_subnet_ids}"
    assert network.outputs["public_subnet_ids"]["value"] == "${try(aws_subnet.public[*].id, [])}"
    # Every service the ALB routes to (catalog, orders), and not the worker.
    environment = root().locals["service_environment"]
    routed = {name for name, s in root().locals["services"].items() if s["path_patterns"]}
    assert routed == {"catalog", "orders"}
    for name in root().locals["services"]:
        given = environment.get(name, {}).get("FORWARDED_ALLOW_IPS")
        assert given == ("${local.forwarded_allow_ips}" if name in routed else None), name
    # uvicorn reads it from the environment: shop.serve passes no value of its own.
    assert serve_parser().parse_args(["orders.main:app"]).forwarded_allow_ips is None


def _seen_client(trusted: str, peer: str, forwarded_for: str) -> str:
    """The client address the app sees behind uvicorn's proxy-headers middleware."""
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["client"][0])

    scope = {"type": "http", "client": (peer, 40000), "scheme": "http",
             "headers": [(b"x-forwarded-for", forwarded_for.encode())]}
    asyncio.run(ProxyHeadersMiddleware(app, trusted_hosts=trusted)(scope, None, None))
    return seen[0]


def test_uvicorn_believes_the_alb_nodes_and_no_one_else() -> None:
    """With the default VPC: FORWARDED_ALLOW_IPS as Terraform renders it (the public /20s,
    comma-separated). An ALB node's X-Forwarded-For names the client; anything else in the
    VPC (a task in a private subnet) is not believed; a client's own X-Forwarded-For, to
    which the ALB appends the address it saw, names no one."""
    assert squash(sub("network").locals["public_cidrs"]) == \
        "${[foriinrange(var.az_count):cidrsubnet(var.cidr,4,i)]}"
    assert squash(sub("network").locals["private_cidrs"]) == \
        "${[foriinrange(var.az_count):cidrsubnet(var.cidr,4,i+8)]}"
    vpc = ipaddress.ip_network(root().variables["vpc_cidr"]["default"])
    subnets = list(vpc.subnets(prefixlen_diff=4))
    az_count = root().variables["az_count"]["default"]
    trusted = ",".join(str(subnets[i]) for i in range(az_count))
    alb_node = str(subnets[az_count - 1][17])
    task = str(subnets[8][5])
    assert _seen_client(trusted, alb_node, "198.51.100.7") == "198.51.100.7"
    assert _seen_client(trusted, task, "198.51.100.7") == task
    assert _seen_client(trusted, alb_node, "203.0.113.1, 198.51.100.7") == "198.51.100.7"


def test_no_service_but_the_migrate_step_has_the_master_secret() -> None:
    holders = {name for name, value in root().locals.items()
               if MASTER_SECRET[2:-1] in str(value)}
    assert holders == {"migrate_environment", "migrate_secret_arns"}, holders
    migrate = squash(root().locals["migrate_environment"])
    assert migrate.startswith("${merge(local.database_urls.owner,{")
    assert f"SHOP_DATABASE_SECRET_ARN={MASTER_SECRET[2:-1]}" in migrate
    assert f"SHOP_ROLE_SECRETS=jsonencode({ROLE_SECRET})" in migrate
    assert "SHOP_MIGRATE" not in migrate, "the migrate step is the one that migrates"
    # The service call names the master secret nowhere itself: only through the migrate
    # step's locals (init container, and the task role of the task that runs it).
    for argument, value in module_call("service").items():
        assert MASTER_SECRET[2:-1] not in str(value), f"module.service.{argument}"
    # The proxy keeps the master's login, for the migrate step.
    assert module_call("rds_proxy")["secret_arn"] == MASTER_SECRET
    assert sub("aurora").outputs["master_user_secret_arn"]["value"] == \
        "${try(aws_rds_cluster.this.master_user_secret[0].secret_arn, null)}"


def test_the_migrations_are_a_one_shot_task_of_their_own() -> None:
    """Issue 21, item 1: not an init container of the internet-facing orders task (a task
    role is the whole task's), but a task definition with no service, run on deploy."""
    call = module_call("migrate")
    assert call["source"] == "./modules/ecs_task"
    assert call["image"] == "${module.ecr.repository_urls[local.migrate.image]}:${var.image_tag}"
    assert root().locals["migrate"] == {
        "image": "orders", "command": ["python", "-m", "shop.migrate", "--timeout", "600"]}
    assert call["command"] == "${local.migrate.command}"
    assert call["environment"] == "${local.migrate_environment}"
    assert call["task_secret_arns"] == "${local.migrate_secret_arns}"
    task = sub("ecs_task")
    assert not task.of_kind("aws_ecs_service"), "one-shot: no service keeps it running"
    definition = squash(task.resource("aws_ecs_task_definition", "this")["container_definitions"])
    for expected in ("essential=true", "readonlyRootFilesystem=true", "command=var.command",
                     "environment=local.environment"):
        assert expected in definition, expected
    assert "secrets" not in definition, "the command reads its secrets itself"
    # No service runs migrations any more, in any container.
    service = sub("ecs_service")
    assert "init_container" not in service.variables
    assert "dependsOn" not in service.text
    assert "runs_migrations" not in str(root().locals["services"])
    assert "migrate" not in str(module_call("service"))
    # ... and the deploy can start it: the outputs name everything run-task needs.
    run_task = root().outputs["migrate_run_task"]["value"]
    for key in ("cluster", "task_definition", "subnets", "security_groups"):
        assert key in run_task
    assert "module.migrate.task_definition_arn" in run_task["task_definition"]
    assert "module.security_groups.tasks_security_group_id" in str(run_task["security_groups"])


def test_each_task_role_reads_exactly_its_secrets() -> None:
    """The orders role reads shop_orders' secret only, the catalog role shop_catalog's; the
    master secret (the schema owner's) is the migrate task's alone."""
    assert module_call("service")["task_secret_arns"] == \
        [f"${{{ROLE_SECRET}[each.value.database_role]}}"]
    assert {name: s["database_role"] for name, s in root().locals["services"].items()} == ROLES
    assert MASTER_SECRET[2:-1] not in str(module_call("service")), \
        "no service's task role can read the master secret"
    assert squash(root().locals["migrate_secret_arns"]) == (
        f"${{concat([{MASTER_SECRET[2:-1]}],[forroleinsort(tolist(local.database_roles)):"
        f"{ROLE_SECRET}[role]])}}")
    readers = {name for name, body in root().modules.items()
               if "local.migrate_secret_arns" in str(body)}
    assert readers == {"migrate"}
    for module in ("ecs_service", "ecs_task"):
        service = sub(module)
        policy = service.resource("aws_iam_role_policy", "task_secrets")
        assert policy["role"] == "${aws_iam_role.task.id}", "the task role, not the execution role"
        assert squash(policy["count"]) == "${length(var.task_secret_arns)>0?1:0}"
        read, decrypt = statements(policy["policy"])
        assert 'Action=["secretsmanager:GetSecretValue"]' in read
        assert "Resource=var.task_secret_arns" in read
        assert 'Action=["kms:Decrypt"]' in decrypt and "Resource=[var.kms_key_arn]" in decrypt
        assert ('"kms:ViaService"="secretsmanager.${data.aws_region.current.region}'
                '.amazonaws.com"') in decrypt
    # ... and that key is the one every database secret is encrypted with.
    cluster = sub("aurora").resource("aws_rds_cluster", "this")
    assert cluster["master_user_secret_kms_key_id"] == "${var.kms_key_arn}"
    assert sub("aurora").resource("aws_secretsmanager_secret", "app_role")["kms_key_id"] == \
        "${var.kms_key_arn}"
    assert module_call("aurora")["kms_key_arn"] == module_call("service")["kms_key_arn"] == \
        module_call("migrate")["kms_key_arn"] == "${module.kms.key_arn}"
    # No other policy of the tasks reaches Secrets Manager.
    for text in root().locals["task_policies"].values():
        assert "secretsmanager" not in text


def test_orders_role_cannot_read_the_master_secret() -> None:
    """Rendered for each service: the secrets its task role may read, as Terraform computes
    them from the services map, the roles and the task_secret_arns expression."""
    secrets = {"master": "MASTER", "shop_orders": "ORDERS", "shop_catalog": "CATALOG"}
    (expression,) = module_call("service")["task_secret_arns"]
    match = re.fullmatch(r"\$\{module\.aurora\.app_role_secret_arns\["
                         r"each\.value\.database_role\]\}", expression)
    assert match, expression
    readable = {name: {secrets[s["database_role"]]}
                for name, s in root().locals["services"].items()}
    assert readable == {"catalog": {"CATALOG"}, "orders": {"ORDERS"},
                        "order-worker": {"ORDERS"}}
    assert all("MASTER" not in found for found in readable.values())


def test_one_secret_per_app_role_generated_once_by_the_aws_provider() -> None:
    aurora = sub("aurora")
    assert module_call("aurora")["app_roles"] == "${local.database_roles}"
    secret = aurora.resource("aws_secretsmanager_secret", "app_role")
    assert secret["for_each"] == "${var.app_roles}"
    assert secret["kms_key_id"] == "${var.kms_key_arn}"
    password = aurora.data[("aws_secretsmanager_random_password", "app_role")]
    assert password["for_each"] == "${var.app_roles}"
    version = aurora.resource("aws_secretsmanager_secret_version", "app_role")
    assert version["secret_id"] == "${aws_secretsmanager_secret.app_role[each.key].id}"
    assert squash(version["secret_string"]) == (
        "${jsonencode({username=each.key,password=data.aws_secretsmanager_random_password"
        ".app_role[each.key].random_password})}")
    assert version["lifecycle"] == [{"ignore_changes": ["secret_string"]}], \
        "a plan must not draw a new password"
    # Consumers get the ARN once the secret has its value.
    assert "aws_secretsmanager_secret_version.app_role" in \
        aurora.outputs["app_role_secret_arns"]["value"]
    for path in ALL_MODULE_DIRS:
        text = load(path).text
        assert not re.search(r'(resource|data)\s+"random_', text), f"{path.name}: random provider"
        assert "hashicorp/random" not in text, path.name


def test_the_proxy_logs_in_every_app_role_and_the_master_user() -> None:
    proxy = sub("rds_proxy")
    resource = proxy.resource("aws_db_proxy", "this")
    (master,) = resource["auth"]
    assert master["secret_arn"] == "${var.secret_arn}"
    (dynamic,) = resource["dynamic"]
    (content,) = dynamic["auth"]["content"]
    assert dynamic["auth"]["for_each"] == "${var.app_secret_arns}"
    assert content["secret_arn"] == "${auth.value}"
    for auth in (master, content):
        assert auth["auth_scheme"] == "SECRETS" and auth["iam_auth"] == "DISABLED"
        assert auth["client_password_auth_type"] == "POSTGRES_SCRAM_SHA_256"
    assert module_call("rds_proxy")["app_secret_arns"] == f"${{{ROLE_SECRET}}}"
    # ... and may read all of them, decrypting through Secrets Manager only.
    assert squash(proxy.locals["secret_arns"]) == \
        "${concat([var.secret_arn],values(var.app_secret_arns))}"
    read, decrypt = statements(proxy.resource("aws_iam_role_policy", "this")["policy"])
    assert "Resource=local.secret_arns" in read
    assert '"kms:ViaService"="secretsmanager.' in decrypt
    assert resource["require_tls"] is True


def test_policy_statement_reader_can_fail() -> None:
    policy = '${jsonencode({Statement = [{Sid = "A", Resource = ["x"]}, {C = {D = "${e}"}}]})}'
    assert statements(policy) == ['{Sid="A",Resource=["x"]}', '{C={D="${e}"}}']


# Task roles: least privilege ---------------------------------------------------------------


def test_each_task_role_reaches_only_its_own_resources() -> None:
    policies = {k: squash(v) for k, v in root().locals["task_policies"].items()}
    catalog, orders, worker = policies["catalog"], policies["orders"], policies["order-worker"]
    assert "product_cache_table_arn" in catalog
    assert "queue_arn" not in catalog and "order_status_table_arn" not in catalog
    assert '"sqs:SendMessage"' in orders and "sqs:ReceiveMessage" not in orders
    assert "order_status_table_arn" in orders and "product_cache" not in orders
    for action in ("ReceiveMessage", "DeleteMessage", "ChangeMessageVisibility"):
        assert f'"sqs:{action}"' in worker
    assert '"dynamodb:BatchWriteItem"' in worker, "the worker records a batch in one call"
    assert "DeleteItem" not in orders, "an accepted order is the worker's to decide"
    assert "module.messaging.dlq_arn" in worker, "redrive reads the DLQ"
    assert "product_cache" not in worker
    for text in policies.values():
        assert '"*"' not in text and "Resource=\"*\"" not in text


# Messaging --------------------------------------------------------------------------------


def test_queue_names_redrive_visibility_and_encryption() -> None:
    messaging = sub("messaging")
    orders = messaging.resource("aws_sqs_queue", "orders")
    dlq = messaging.resource("aws_sqs_queue", "dlq")
    assert root().variables["name"]["default"] == "chaos-shop"
    assert orders["name"] == "${var.name}-orders" and dlq["name"] == "${var.name}-orders-dlq"
    assert "deadLetterTargetArn=aws_sqs_queue.dlq.arn" in squash(orders["redrive_policy"])
    assert "maxReceiveCount=var.max_receive_count" in squash(orders["redrive_policy"])
    assert messaging.variables["max_receive_count"]["default"] == 10
    assert root().variables["max_receive_count"]["default"] == 10
    visibility = messaging.variables["visibility_timeout_seconds"]["default"]
    assert visibility > Settings().worker_visibility_timeout
    assert root().variables["queue_visibility_timeout_seconds"]["default"] > \
        Settings().worker_visibility_timeout
    for queue in (orders, dlq):
        assert queue.get("kms_master_key_id") or queue.get("sqs_managed_sse_enabled")


def test_tables_keys_and_protection() -> None:
    messaging = sub("messaging")
    keys = {"product_cache": ("id", "N"), "order_status": ("order_id", "S")}
    for name, (key, kind) in keys.items():
        table = messaging.resource("aws_dynamodb_table", name)
        assert table["hash_key"] == key
        assert table["attribute"][0] == {"name": key, "type": kind}
        assert table["billing_mode"] == "PAY_PER_REQUEST"
        assert table["point_in_time_recovery"] == [{"enabled": True}]
        assert table["server_side_encryption"][0]["enabled"] is True
        assert table["deletion_protection_enabled"] == "${var.deletion_protection}"
    assert messaging.variables["deletion_protection"]["default"] is True


def test_order_status_has_the_sparse_undecided_index() -> None:
    """The orders accepted while the database is out wait in order_status; the pending ones
    (and only they) carry `undecided` (a shard name) and `accepted_at`, so the index holds
    exactly the orders the worker still has to decide, oldest first per shard."""
    messaging = sub("messaging")
    names = messaging.locals["undecided"]
    assert names == {"name": "undecided", "hash_key": "undecided", "range_key": "accepted_at"}
    table = messaging.resource("aws_dynamodb_table", "order_status")
    attributes = {a["name"]: a["type"] for a in table["attribute"]}
    assert attributes == {"order_id": "S", "${local.undecided.hash_key}": "S",
                          "${local.undecided.range_key}": "N"}
    (index,) = table["global_secondary_index"]
    assert index["name"] == "${local.undecided.name}" and index["projection_type"] == "ALL"
    assert index["key_schema"] == [
        {"attribute_name": "${local.undecided.hash_key}", "key_type": "HASH"},
        {"attribute_name": "${local.undecided.range_key}", "key_type": "RANGE"}]
    assert "hash_key" not in index and "range_key" not in index, "deprecated in the GSI"
    assert squash(messaging.outputs["order_status_undecided_index_arn"]["value"]) == (
        '${try(format("%s/index/%s",aws_dynamodb_table.order_status.arn,'
        'local.undecided.name),null)}')


def test_alarms_on_dlq_depth_and_queue_age() -> None:
    alarms = sub("observability").of_kind("aws_cloudwatch_metric_alarm")
    assert alarms["dlq_depth"]["dimensions"] == {"QueueName": "${var.dlq_name}"}
    assert alarms["queue_age"]["dimensions"] == {"QueueName": "${var.queue_name}"}
    assert alarms["dlq_depth"]["metric_name"] == "ApproximateNumberOfMessagesVisible"
    assert alarms["queue_age"]["metric_name"] == "ApproximateAgeOfOldestMessage"


# A failed order: the worker's `order failed:` line, counted, alarmed, on the dashboard ------


def cloudwatch_pattern_matches(pattern: str, line: str) -> bool:
    """CloudWatch Logs filter patterns of quoted or plain terms: every term must occur in the
    line, case-sensitively (the subset this project uses; anything else is refused)."""
    terms = re.findall(r'"((?:[^"\\]|\\.)*)"|(\S+)', pattern)
    assert terms, pattern
    words = [quoted.replace('\\"', '"') if quoted else plain for quoted, plain in terms]
    for word in words:
        assert not re.match(r"[\[{%?-]", word), f"unsupported filter syntax: {word}"
    return all(word in line for word in words)


def worker_log_line(message: str) -> str:
    """A line as the worker writes it (shop.logs: time, level, logger, then the message)."""
    fmt = re.search(r'format="([^"]+)"', (ROOT / "src/shop/logs.py").read_text())
    assert fmt, "shop.logs has no format= any more"
    record = logging.LogRecord("order_worker.worker", logging.WARNING, __file__, 1, message,
                               None, None)
    return logging.Formatter(fmt.group(1)).format(record)


def test_failed_orders_pattern_matches_the_workers_line() -> None:
    observability = sub("observability")
    metric_filter = observability.resource("aws_cloudwatch_log_metric_filter", "orders_failed")
    assert metric_filter["pattern"] == "${local.orders_failed.pattern}"
    pattern = observability.locals["orders_failed"]["pattern"].replace('\\"', '"')
    failed = worker_log_line("order failed: 3f2c9d1e dead-lettered after 10 receives")
    assert failed.index("order failed:") > 0, failed
    assert cloudwatch_pattern_matches(pattern, failed)
    assert cloudwatch_pattern_matches(pattern, "order failed:")
    for other in ("order placed: 3f2c9d1e", "order 3f2c9d1e failed: retrying",
                  "Order Failed: 3f2c9d1e", "order failed 3f2c9d1e"):
        assert not cloudwatch_pattern_matches(pattern, worker_log_line(other)), other


def test_pattern_matcher_can_fail() -> None:
    assert cloudwatch_pattern_matches('"a b" c', "x a b y c")
    assert not cloudwatch_pattern_matches('"a b" c', "a c b")
    with pytest.raises(AssertionError):
        cloudwatch_pattern_matches("%order failed:%", "order failed:")


def test_failed_orders_metric_on_the_workers_log_group() -> None:
    observability = sub("observability")
    metric_filter = observability.resource("aws_cloudwatch_log_metric_filter", "orders_failed")
    assert metric_filter["log_group_name"] == "${var.worker_log_group_name}"
    assert squash(metric_filter["count"]) == "${local.worker_deployed?1:0}"
    assert squash(observability.locals["worker_deployed"]) == "${var.worker_log_group_name!=null}"
    (transformation,) = metric_filter["metric_transformation"]
    assert transformation["value"] == "1"
    assert observability.locals["orders_failed"]["namespace"] == "ChaosShop"
    assert observability.locals["orders_failed"]["metric"] == "OrdersFailed"
    # The worker's log group exactly, and only where the worker is deployed. Its name is
    # configuration (known at plan), so the count above is too.
    assert squash(module_call("observability")["worker_log_group_name"]) == \
        '${var.enable_degradation?module.service["order-worker"].log_group_name:null}'
    assert root().locals["services"]["order-worker"]["needs_degradation"] is True
    service = sub("ecs_service")
    assert service.outputs["log_group_name"]["value"] == \
        "${try(aws_cloudwatch_log_group.this.name, null)}"
    assert service.resource("aws_cloudwatch_log_group", "this")["name"] == \
        "${local.log_group_name}"
    assert service.locals["log_group_name"] == "/${var.cluster_name}/${var.name}"


def test_failed_orders_alarm_fires_on_one_in_five_minutes() -> None:
    alarms = sub("observability").of_kind("aws_cloudwatch_metric_alarm")
    alarm = alarms["orders_failed"]
    assert squash(alarm["count"]) == "${local.worker_deployed?1:0}"
    source = "aws_cloudwatch_log_metric_filter.orders_failed[0].metric_transformation[0]"
    assert alarm["namespace"] == f"${{{source}.namespace}}"
    assert alarm["metric_name"] == f"${{{source}.name}}"
    assert alarm["statistic"] == "Sum"
    assert alarm["period"] * alarm["evaluation_periods"] == 300
    assert alarm["threshold"] == 0 and alarm["comparison_operator"] == "GreaterThanThreshold"
    assert alarm["treat_missing_data"] == "notBreaching"
    # Wired like every other alarm; the DLQ-depth alarm stays beside it.
    for other in ("dlq_depth", "queue_age", "alb_5xx_rate"):
        assert alarms[other]["alarm_actions"] == alarm["alarm_actions"] == "${var.alarm_actions}"
        assert alarms[other]["ok_actions"] == alarm["ok_actions"]
    assert module_call("observability")["alarm_actions"] == "${var.alarm_actions}"


def test_dashboard_shows_failed_orders_and_their_alarm() -> None:
    observability = sub("observability")
    body = squash(str(observability.resource("aws_cloudwatch_dashboard", "this")))
    assert "[local.orders_failed.namespace,local.orders_failed.metric," in body
    assert "aws_cloudwatch_metric_alarm.orders_failed[*].arn" in body
    assert "aws_cloudwatch_metric_alarm.dlq_depth.arn" in body


# Aurora -----------------------------------------------------------------------------------


def test_aurora_writer_and_reader_serverless_encrypted_secret_managed() -> None:
    aurora = sub("aurora")
    cluster = aurora.resource("aws_rds_cluster", "this")
    assert cluster["storage_encrypted"] is True
    assert cluster["manage_master_user_password"] is True
    assert "master_password" not in cluster
    assert cluster["serverlessv2_scaling_configuration"][0]["min_capacity"] == \
        "${var.min_capacity}"
    writer = aurora.resource("aws_rds_cluster_instance", "writer")
    reader = aurora.resource("aws_rds_cluster_instance", "reader")
    assert writer["promotion_tier"] == 0 and reader["promotion_tier"] == 1
    assert writer["instance_class"] == reader["instance_class"] == "db.serverless"
    assert "aws_rds_cluster_instance.writer" in str(reader["depends_on"])
    for output in root().outputs.values():
        assert "master_user_secret[0].secret_string" not in str(output["value"])


def test_proxy_endpoints_and_target() -> None:
    proxy = sub("rds_proxy")
    assert proxy.resource("aws_db_proxy_endpoint", "reader")["target_role"] == "READ_ONLY"
    target = proxy.resource("aws_db_proxy_target", "this")
    assert target["db_cluster_identifier"] == "${var.cluster_identifier}"
    pool = proxy.resource("aws_db_proxy_default_target_group", "this")["connection_pool_config"]
    assert pool[0]["connection_borrow_timeout"] == "${var.connection_borrow_timeout}"
    assert proxy.resource("aws_db_proxy", "this")["auth"][0]["secret_arn"] == "${var.secret_arn}"


# FIS --------------------------------------------------------------------------------------


TEMPLATE_GROUPS = {"templates_always": None, "templates_worker": "local.has_worker",
                   "templates_chaos": "var.task_fault_injection"}


def _local(value: Any) -> Any:
    """A value written as one of the fis module's locals (the db-outage runbook's action)."""
    if isinstance(value, str) and re.fullmatch(r"\$\{local\.\w+\}", value):
        return sub("fis").locals[value[len("${local."):-1]]
    return value


def _parameters(value: Any) -> dict[str, str]:
    """An action's parameters; merge(local.task_latency, {...}) filled in."""
    if isinstance(value, dict):
        return value
    inner = re.fullmatch(r"\$\{merge\(local\.task_latency, \{(.*)\}\)\}", value, re.S)
    assert inner, value
    found = dict(sub("fis").locals["task_latency"])
    for key, quoted, call in re.findall(
            r'(\w+) = (?:"((?:[^"\\]|\\.)*)"|(\w+\((?:[^()]|\([^()]*\))*\)))', inner.group(1)):
        found[key] = "${" + call + "}" if call else quoted
    return found


def templates() -> dict[str, dict[str, Any]]:
    """Every FIS template as declared in the module's map: name -> description, stop_on_dlq,
    targets (name -> resource type, selection, tag) and actions (name -> action id, targets,
    parameters, start_after), locals filled in. The stop-task-<service> ones are a for
    expression over the services (test_stop_task_template_for_each_service)."""
    found: dict[str, dict[str, Any]] = {}
    for group in TEMPLATE_GROUPS:
        for name, template in sub("fis").locals[group].items():
            actions = {}
            for action_name, action in template["actions"].items():
                action = dict(_local(action))
                action["parameters"] = _parameters(action["parameters"])
                actions[action_name] = action
            found[name] = {**template, "actions": actions}
    return found


def template_action(name: str) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """A single-action template's action, its parameters and its target."""
    template = templates()[name]
    (action,) = template["actions"].values()
    ((target_name, target),) = template["targets"].items()
    assert list(action["targets"].values()) == [target_name], name
    return action, action["parameters"], target


def tag_of(target: dict[str, Any]) -> dict[str, str]:
    return {"key": target.get("tag_key", "${var.fis_target_tag_key}"), "value": target["tag"]}


def test_one_template_per_failure_mode() -> None:
    assert set(templates()) == {"failover", "db-outage", "credential-rotation", "aws-outage",
                                "reader-loss", "fleet-crash", "worker-crash", "brownout",
                                "aws-slow"}
    assert squash(sub("fis").locals["templates"]) == (
        "${merge(local.templates_always,local.templates_stop_task,"
        "{forname,templateinlocal.templates_worker:name=>templateiflocal.has_worker},"
        "{forname,templateinlocal.templates_chaos:name=>templateifvar.task_fault_injection})}")


def test_the_templates_are_one_resource_of_dynamic_blocks() -> None:
    """Issue 20: one map of templates, one resource; the stop condition, options, logs and
    report written once."""
    fis = sub("fis")
    assert list(fis.of_kind("aws_fis_experiment_template")) == ["this"]
    resource = fis.resource("aws_fis_experiment_template", "this")
    assert resource["for_each"] == "${local.templates}"
    assert resource["description"] == "${var.name}: ${each.value.description}"
    dynamic = {next(iter(d)): next(iter(d.values())) for d in resource["dynamic"]}
    assert set(dynamic) == {"action", "target", "stop_condition",
                            "experiment_report_configuration"}
    assert dynamic["action"]["for_each"] == "${each.value.actions}"
    action = dynamic["action"]["content"][0]
    assert action["action_id"] == "${action.value.action_id}"
    inner = {next(iter(d)): next(iter(d.values())) for d in action["dynamic"]}
    assert inner["parameter"]["for_each"] == "${action.value.parameters}"
    assert inner["target"]["for_each"] == "${action.value.targets}"
    assert dynamic["target"]["for_each"] == "${each.value.targets}"
    tag = dynamic["target"]["content"][0]["resource_tag"][0]
    assert tag == {"key": "${try(target.value.tag_key, var.fis_target_tag_key)}",
                   "value": "${target.value.tag}"}
    assert squash(dynamic["stop_condition"]["for_each"]) == \
        "${each.value.stop_on_dlq?[var.stop_alarm_arn,var.dlq_alarm_arn]:[var.stop_alarm_arn]}"
    assert resource["experiment_options"] == [{"account_targeting": "single-account",
                                               "empty_target_resolution_mode": "fail"}]
    logging = resource["log_configuration"][0]
    assert logging["cloudwatch_logs_configuration"][0]["log_group_arn"] == \
        "${aws_cloudwatch_log_group.this.arn}:*"
    assert squash(resource["tags"]) == '${merge(var.tags,{Name="${var.name}-${each.key}"})}'
    assert "moved" not in fis.text, "the moved blocks are in moved.tf.json"


def test_the_old_addresses_move_to_the_map() -> None:
    moved = json.loads((INFRA / "modules/fis/moved.tf.json").read_text())["moved"]
    pairs = {m["from"]: m["to"] for m in moved}
    old = {"failover": "failover", "db_outage": "db-outage", "brownout[0]": "brownout",
           "credential_rotation": "credential-rotation", "aws_outage": "aws-outage",
           "worker_crash[0]": "worker-crash", "reader_loss": "reader-loss",
           "fleet_crash": "fleet-crash", "aws_slow[0]": "aws-slow",
           **{f'stop_task["{s}"]': f"stop-task-{s}" for s in ("catalog", "orders",
                                                               "order-worker")}}
    assert pairs == {f"aws_fis_experiment_template.{address}":
                     f'aws_fis_experiment_template.this["{key}"]' for address, key in old.items()}
    assert set(old.values()) - {k for k in old.values() if k.startswith("stop-task-")} == \
        set(templates())


def test_every_template_reports_with_the_dashboard() -> None:
    resource = sub("fis").resource("aws_fis_experiment_template", "this")
    (report,) = [d["experiment_report_configuration"] for d in resource["dynamic"]
                 if "experiment_report_configuration" in d]
    assert report["for_each"] == "${var.report == null ? [] : [var.report]}"
    (content,) = report["content"]
    assert content["pre_experiment_duration"] == \
        "PT${experiment_report_configuration.value.minutes_before}M"
    dashboard = content["data_sources"][0]["cloudwatch_dashboard"][0]
    assert dashboard["dashboard_arn"] == "${experiment_report_configuration.value.dashboard_arn}"
    s3 = content["outputs"][0]["s3_configuration"][0]
    assert s3["bucket_name"] == "${experiment_report_configuration.value.bucket}"
    assert s3["prefix"] == "${local.report_prefix}/${each.key}"
    call = module_call("fis")["report"]
    assert call == {"bucket": "${module.fis_reports.bucket}",
                    "dashboard_arn": "${module.observability.dashboard_arn}"}
    assert module_call("fis_reports")["kms_key_arn"] == "${module.kms.key_arn}"
    # The FIS role may read that dashboard and write that prefix, only with a report.
    policy = squash(sub("fis").resource("aws_iam_role_policy", "fis")["policy"])
    assert "slice(local.report_statements,0,var.report==null?0:length(local.report_statements))" \
        in policy
    reports = squash(str(sub("fis").locals["report_statements"]))
    assert "cloudwatch:GetDashboard" in reports and "s3:PutObject" in reports
    assert "${local.report_prefix}/*" in reports


def test_failover_template_targets_the_cluster_by_its_tag() -> None:
    action, _, target = template_action("failover")
    assert action["action_id"] == "aws:rds:failover-db-cluster"
    assert action["targets"] == {"Clusters": "aurora-cluster"}
    assert target["resource_type"] == "aws:rds:cluster"
    assert tag_of(target) == {"key": "${var.fis_target_tag_key}",
                              "value": "${var.fis_target_tag_values.aurora}"}
    # ... and the cluster carries exactly that tag.
    cluster = sub("aurora").resource("aws_rds_cluster", "this")
    assert "var.fis_target_tags" in cluster["tags"]
    assert module_call("aurora")["fis_target_tags"] == \
        {"${(local.fis_tag_key)}": "${local.fis_tag_values.aurora}"}
    assert module_call("fis")["fis_target_tag_key"] == "${local.fis_tag_key}"
    assert module_call("fis")["fis_target_tag_values"] == "${local.fis_tag_values}"
    assert module_call("fis")["cluster_arn"] == "${module.aurora.cluster_arn}"


def test_stop_task_template_for_each_service() -> None:
    stop_task = squash(sub("fis").locals["templates_stop_task"])
    assert stop_task.startswith('${{forserviceinvar.services:"stop-task-${service}"=>{')
    assert 'action_id="aws:ecs:stop-task"' in stop_task
    assert 'resource_type="aws:ecs:task",selection_mode=var.stop_task_selection,' \
           "tag=var.fis_target_tag_values[service]" in stop_task
    assert set(root().locals["services"]) <= {"catalog", "orders", "order-worker"}
    assert "for name in keys(local.services)" in root().locals["fis_tag_values"]


def outage_document() -> dict[str, Any]:
    document = sub("fis").resource("aws_ssm_document", "db_outage")
    assert document["document_type"] == "Automation"
    match = re.fullmatch(r'\$\{file\("\$\{path\.module\}/([\w.-]+)"\)\}', document["content"])
    assert match, document["content"]
    loaded: dict[str, Any] = yaml.safe_load((INFRA / "modules/fis" / match.group(1)).read_text())
    return loaded


def test_outage_template_runs_the_ssm_runbook() -> None:
    template = templates()["db-outage"]
    (action,) = template["actions"].values()
    assert action["action_id"] == "aws:ssm:start-automation-execution"
    parameters = action["parameters"]
    assert parameters["documentArn"] == "${aws_ssm_document.db_outage.arn}"
    assert parameters["maxDuration"].startswith("PT")
    passed = set(re.findall(r"(\w+)\s*=", parameters["documentParameters"]))
    declared = outage_document()["parameters"]
    required = {name for name, spec in declared.items() if "default" not in spec}
    assert required <= passed <= set(declared)
    assert "var.proxy_name" in parameters["documentParameters"]
    assert "var.db_outage_seconds" in parameters["documentParameters"]


def test_outage_runbook_removes_holds_and_always_restores() -> None:
    steps = outage_document()["mainSteps"]
    names = [s["name"] for s in steps]
    remove, hold, restore = steps
    assert remove["action"] == "aws:executeAwsApi"
    assert remove["inputs"]["Api"] == "DeregisterDBProxyTargets"
    assert hold["action"] == "aws:sleep"
    assert restore["isEnd"] is True and names[-1] == restore["name"]
    assert "register_db_proxy_targets" in restore["inputs"]["Script"]
    assert "AVAILABLE" in restore["inputs"]["Script"], "restore waits for the target"
    for step in (remove, hold):
        # A failure or FIS's cancellation (stop condition) still goes to the restore.
        assert step["onFailure"] == f"step:{restore['name']}", step["name"]
        assert step["onCancel"] == f"step:{restore['name']}", step["name"]
    # The restore must not hide its own failure.
    assert restore.get("onFailure", "Abort") == "Abort"


def test_every_template_stops_on_the_5xx_alarm_and_logs() -> None:
    # Those that can lose orders also stop when orders reach the dead-letter queue.
    with_dlq = {"aws-outage", "worker-crash", "fleet-crash", "aws-slow"}
    for name, template in templates().items():
        assert template["stop_on_dlq"] is (name in with_dlq), name
    assert "stop_on_dlq = false" in sub("fis").locals["templates_stop_task"]
    assert module_call("fis")["stop_alarm_arn"] == "${module.observability.alb_5xx_alarm_arn}"
    assert module_call("fis")["dlq_alarm_arn"] == "${module.observability.dlq_alarm_arn}"
    alarm = sub("observability").resource("aws_cloudwatch_metric_alarm", "alb_5xx_rate")
    metrics = str(alarm["metric_query"])
    assert "HTTPCode_ELB_5XX_Count" in metrics and "HTTPCode_Target_5XX_Count" in metrics
    assert "RequestCount" in metrics


def policy_actions(policy: str) -> set[str]:
    return {action for listed in re.findall(r"Action=\[([^\]]*)\]", policy)
            for action in re.findall(r'"([\w-]+:\w+)"', listed)}


def test_fis_role_is_limited_to_its_actions() -> None:
    policy = squash(sub("fis").resource("aws_iam_role_policy", "fis")["policy"])
    assert policy_actions(policy) == {
        "rds:FailoverDBCluster", "rds:DescribeDBClusters", "ecs:StopTask", "ecs:DescribeTasks",
        "ecs:ListTasks", "tag:GetResources", "ssm:StartAutomationExecution",
        "ssm:GetAutomationExecution", "ssm:StopAutomationExecution", "iam:PassRole",
        "logs:CreateLogDelivery", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
        # reader-loss
        "rds:RebootDBInstance", "rds:DescribeDBInstances",
        # brownout, aws-slow: the latency document sent to the tasks' SSM sidecars
        "ssm:SendCommand", "ssm:ListCommands", "ssm:CancelCommand",
        "ecs:DescribeContainerInstances", "ec2:DescribeInstances",
        # aws-outage: the network ACL FIS swaps in and out
        "ec2:CreateNetworkAcl", "ec2:CreateNetworkAclEntry", "ec2:DeleteNetworkAcl",
        "ec2:CreateTags", "ec2:ReplaceNetworkAclAssociation", "ec2:DescribeNetworkAcls",
        "ec2:DescribeSubnets", "ec2:DescribeVpcs", "ec2:DescribeManagedPrefixLists",
        "ec2:GetManagedPrefixListEntries",
    }
    assert "Resource=[aws_iam_role.automation.arn,aws_iam_role.rotation.arn]" in policy, \
        "PassRole of the two runbook roles only"
    assert "Resource=var.instance_arns" in policy, "reboots the shop's instances only"
    assert module_call("fis")["instance_arns"] == "${module.aurora.instance_arns}"
    # Deleting and editing ACLs: FIS's own only; swapping them: in this VPC only.
    assert policy.count('"ec2:ResourceTag/managedByFIS"="true"') == 1
    assert policy.count('"aws:RequestTag/managedByFIS"="true"') == 1
    assert '"ec2:Vpc"=local.vpc_arn' in policy
    assert 'document/AWSFIS-Run-*' in policy, "SendCommand of FIS's documents only"


def test_brownout_delays_only_the_database_answers_of_catalog_and_orders() -> None:
    action, parameters, target = template_action("brownout")
    assert action["action_id"] == "aws:ecs:task-network-latency"
    assert list(action["targets"]) == ["Tasks"]
    assert target["resource_type"] == "aws:ecs:task" and target["selection_mode"] == "ALL"
    assert tag_of(target) == {"key": "${var.fis_group_tag_key}",
                              "value": "${var.fis_group_tag_value}"}
    assert parameters["delayMilliseconds"] == "${tostring(var.brownout_delay_ms)}"
    assert parameters["duration"] == "PT${var.brownout_seconds}S"
    assert parameters["useEcsFaultInjectionEndpoints"] == "true"
    # Scoped: without sources FIS delays all of a task's egress.
    assert parameters["sources"] == '${join(",", var.brownout_sources)}'
    assert module_call("fis")["brownout_sources"] == \
        ["${local.database_endpoint.writer}", "${local.database_endpoint.reader}"]
    assert "brownout" in sub("fis").locals["templates_chaos"]
    # The group tag is on the services behind the ALB, catalog and orders, and no other.
    assert root().locals["brownout_services"] == "${toset(keys(local.routes))}"
    assert "if length(s.path_patterns) > 0" in root().locals["routes"]
    tags = module_call("service")["tags"]
    assert "contains(local.brownout_services, each.key)" in tags
    assert "(local.fis_group_tag_key) = local.fis_group_tag_value" in tags
    assert module_call("fis")["fis_group_tag_value"] == "${local.fis_group_tag_value}"


def test_brownout_tasks_opt_in_to_fault_injection() -> None:
    ecs = sub("ecs_service")
    definition = ecs.resource("aws_ecs_task_definition", "this")
    assert definition["enable_fault_injection"] == "${var.fault_injection != null}"
    assert definition["pid_mode"] == '${var.fault_injection == null ? null : "task"}'
    assert definition["network_mode"] == "awsvpc"
    assert "local.fault_injection_sidecars" in definition["container_definitions"]
    sidecar = squash(ecs.locals["fault_injection_sidecars"])
    assert "ACTIVATION_PARAMETER_PREFIX" in sidecar and "essential=false" in sidecar
    # Only catalog and orders opt in, and only in a chaos deployment.
    call = squash(module_call("service")["fault_injection"])
    assert call.startswith("${local.task_fault_injection&&contains(local.brownout_services,")
    assert root().locals["task_fault_injection"] == "${var.enable_task_fault_injection}"


# The FIS sidecar: only in a chaos deployment, pinned, read-only, no activations from the app's
# role (issue 21, item 2) ------------------------------------------------------------------


def test_the_sidecar_is_off_by_default() -> None:
    assert root().variables["enable_task_fault_injection"]["default"] is False
    assert sub("fis").variables["task_fault_injection"]["default"] is False
    assert sub("ecs_service").variables["fault_injection"]["default"] is None
    assert module_call("fis")["task_fault_injection"] == "${local.task_fault_injection}"
    # Its image's repository, its templates, its broker and its endpoints exist only then.
    assert "local.task_fault_injection&&var.ssm_agent_image==null?{" in \
        squash(root().locals["images"])
    assert set(sub("fis").locals["templates_chaos"]) == {"brownout", "aws-slow"}
    assert "{forname,templateinlocal.templates_chaos:name=>templateifvar.task_fault_injection}" \
        in squash(sub("fis").locals["templates"])
    fis = sub("fis")
    for kind, name in (("aws_ssm_document", "sidecar_activation"),
                       ("aws_iam_role", "sidecar_broker"), ("aws_iam_role", "sidecar_events"),
                       ("aws_iam_role", "managed_instance")):
        assert fis.resource(kind, name)["count"] == "${var.task_fault_injection ? 1 : 0}", name
    assert squash(fis.locals["sidecar_events"]) == \
        '${var.task_fault_injection?{register="RUNNING",deregister="STOPPED"}:{}}'


def test_the_sidecar_image_is_pinned_and_has_its_tools_built_in() -> None:
    assert root().variables["ssm_agent_image"]["default"] is None
    assert squash(root().locals["fis_sidecar_image"]).endswith(':${var.image_tag}"}'), \
        "the deployment's own build, by its immutable tag"
    dockerfile = (INFRA / "fis-sidecar/Dockerfile").read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile, re.M)
    assert base and re.search(r":\d{4}\.\d+\.\d{8}\.\d+$", base.group(1)), "an exact tag"
    assert ":latest" not in dockerfile
    assert "dnf install" in dockerfile, "at build time"
    assert "amazon-ssm-agent jq bind-utils lsof at procps-ng awscli-2" in dockerfile
    entrypoint = (INFRA / "fis-sidecar/entrypoint.sh").read_text()
    assert not re.search(r"\b(dnf|yum)\b", entrypoint), "nothing installed at start"
    assert "create-activation" not in entrypoint and "get-parameter" in entrypoint
    assert "amazon-ssm-agent -register" in entrypoint
    images = squash(root().locals["images"])
    assert 'dockerfile="infra/fis-sidecar/Dockerfile",context="infra/fis-sidecar"' in images
    # FIS installs nothing either: the documents' dependencies are in the image.
    for name in ("brownout", "aws-slow"):
        (parameters,) = [a["parameters"] for a in templates()[name]["actions"].values()
                         if a["action_id"] == "aws:ecs:task-network-latency"]
        assert parameters["installDependencies"] == "false", name


@pytest.mark.parametrize(("image", "accepted"), [
    ("public.ecr.aws/amazon-ssm-agent/amazon-ssm-agent:latest", False),
    ("public.ecr.aws/amazon-ssm-agent/amazon-ssm-agent", False),
    ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/ssm:3.3.1", True),
    ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/ssm@sha256:" + "a" * 64, True),
])
def test_a_mirrored_sidecar_image_must_be_pinned(tf_tmp: Path, image: str, accepted: bool) -> None:
    plan = plan_variables(INFRA, tf_tmp, image_tag="t", allow_plain_http_for_lab="true",
                          ssm_agent_image=image)
    assert plan.ok is accepted, plan.output


def test_the_app_task_role_cannot_create_activations_or_pass_roles() -> None:
    ecs = sub("ecs_service")
    policies = str(ecs.of_kind("aws_iam_role_policy"))
    assert "ssm:CreateActivation" not in policies and "iam:PassRole" not in policies
    read, decrypt = statements(ecs.resource("aws_iam_role_policy", "task_fault_injection")
                               ["policy"])
    assert policy_actions(read) == {"ssm:GetParameter"}
    assert "Resource=[\"${var.fault_injection.activation_parameter_arn_prefix}/*\"]" in read
    assert policy_actions(decrypt) == {"kms:Decrypt"}
    assert '"kms:ViaService"="ssm.' in decrypt
    # The broker does it: created and deleted by an SSM Automation EventBridge starts from the
    # tasks' state changes, with a role only it has.
    fis = sub("fis")
    broker = squash(fis.resource("aws_iam_role_policy", "sidecar_broker")["policy"])
    assert "ssm:CreateActivation" in broker
    assert "Resource=[aws_iam_role.managed_instance[0].arn]" in broker
    assert '"iam:PassedToService"="ssm.amazonaws.com"' in broker
    assert '"ssm:resourceTag/ECS_TASK_ARN"=local.shop_task_arns' in broker
    trust = squash(fis.resource("aws_iam_role", "sidecar_broker")["assume_role_policy"])
    assert 'Service="ssm.amazonaws.com"' in trust
    rule = fis.resource("aws_cloudwatch_event_rule", "sidecar")
    pattern = squash(rule["event_pattern"])
    assert 'source=["aws.ecs"]' in pattern and '"detail-type"=["ECSTaskStateChange"]' in pattern
    assert "clusterArn=[var.ecs_cluster_arn]" in pattern and "lastStatus=[each.value]" in pattern
    target = fis.resource("aws_cloudwatch_event_target", "sidecar")
    assert "automation-definition/${aws_ssm_document.sidecar_activation[0].name}" in \
        target["arn"]
    template = squash(target["input_transformer"][0]["input_template"])
    assert '"TASK_ARN","<taskArn>"' in template, "the event's task, not a fixed one"
    document = yaml.safe_load((INFRA / "modules/fis/sidecar-activation.yaml").read_text())
    script = document["mainSteps"][0]["inputs"]["Script"]
    assert "RegistrationLimit=1" in script and 'Type="SecureString"' in script
    assert "delete_activation" in script and "deregister_managed_instance" in script
    assert document["parameters"]["Action"]["allowedValues"] == ["register", "deregister"]
    # The agent's own role: SSM's managed policy, and no clean-up rights of its own.
    assert not any(kind == "aws_iam_role_policy" and name == "managed_instance"
                   for kind, name in fis.resources)


def test_the_sidecar_root_filesystem_is_read_only() -> None:
    ecs = sub("ecs_service")
    sidecar = squash(ecs.locals["fault_injection_sidecars"])
    assert "readonlyRootFilesystem=true" in sidecar
    assert "mountPoints=[forvolume,pathinlocal.sidecar_volumes:" in sidecar
    assert set(ecs.locals["sidecar_volumes"].values()) == {
        "/var/lib/amazon/ssm", "/var/log/amazon/ssm", "/var/spool/at", "/run", "/tmp"}
    (volumes,) = ecs.resource("aws_ecs_task_definition", "this")["dynamic"]
    assert volumes["volume"]["for_each"] == \
        "${var.fault_injection == null ? {} : local.sidecar_volumes}"
    assert not any("CKV_AWS_336" in c for c in ecs.comments), "no skip: every container is"


def test_fis_sends_commands_to_the_shops_tasks_only_and_writes_only_its_log_policy() -> None:
    policy = sub("fis").resource("aws_iam_role_policy", "fis")["policy"]
    found = {sid.group(1): st for st in statements(policy)
             if (sid := re.search(r'Sid="(\w+)"', st))}
    documents, instances = found["SendFisDocuments"], found["ToTheShopsTasksOnly"]
    assert policy_actions(documents) == policy_actions(instances) == {"ssm:SendCommand"}
    assert "document/AWSFIS-Run-*" in documents and "managed-instance" not in documents
    assert '"ssm:resourceTag/ECS_TASK_ARN"=local.shop_task_arns' in instances
    assert sub("fis").locals["shop_task_arns"].endswith(":task/${var.ecs_cluster_name}/*")
    put = found["PolicyOfTheExperimentLogGroupOnly"]
    assert policy_actions(put) == {"logs:PutResourcePolicy"}
    assert 'Resource=[aws_cloudwatch_log_group.this.arn,"${aws_cloudwatch_log_group.this.arn}:*"]' \
        in put
    for statement in found.values():
        if 'Resource=["*"]' in statement:
            assert "ssm:SendCommand" not in statement and "logs:PutResourcePolicy" not in statement
    delivery = sub("fis").resource("aws_cloudwatch_log_resource_policy", "fis")
    assert "delivery.logs.amazonaws.com" in delivery["policy_document"]
    assert "aws_cloudwatch_log_group.this.arn" in delivery["policy_document"]


def rotation_document() -> dict[str, Any]:
    document = sub("fis").resource("aws_ssm_document", "credential_rotation")
    assert document["document_type"] == "Automation"
    loaded: dict[str, Any] = yaml.safe_load(
        (INFRA / "modules/fis/credential-rotation.yaml").read_text())
    assert "credential-rotation.yaml" in document["content"]
    return loaded


def test_credential_rotation_rotates_the_master_secret_through_ssm() -> None:
    (action,) = templates()["credential-rotation"]["actions"].values()
    parameters = action["parameters"]
    assert action["action_id"] == "aws:ssm:start-automation-execution"
    assert parameters["documentArn"] == "${aws_ssm_document.credential_rotation.arn}"
    passed = set(re.findall(r"(\w+)\s*=", parameters["documentParameters"]))
    assert passed == set(rotation_document()["parameters"])
    assert "var.master_secret_arn" in parameters["documentParameters"]
    assert module_call("fis")["master_secret_arn"] == "${module.aurora.master_user_secret_arn}"
    (step,) = rotation_document()["mainSteps"]
    assert "rotate_secret(SecretId=secret_id, RotateImmediately=True)" in step["inputs"]["Script"]
    assert "AWSPENDING" in step["inputs"]["Script"], "waits for the rotation to finish"
    role = squash(sub("fis").resource("aws_iam_role_policy", "rotation")["policy"])
    assert policy_actions(role) == {"secretsmanager:RotateSecret",
                                    "secretsmanager:DescribeSecret"}
    assert "Resource=[var.master_secret_arn]" in role


def test_aws_outage_cuts_dynamodb_while_the_database_is_out() -> None:
    template = templates()["aws-outage"]
    actions = {a["action_id"]: a for a in template["actions"].values()}
    assert set(actions) == {"aws:ssm:start-automation-execution",
                            "aws:network:disrupt-connectivity"}
    assert not any(a["start_after"] for a in actions.values()), "in parallel"
    assert template["actions"]["remove-proxy-target"] == \
        templates()["db-outage"]["actions"]["remove-proxy-target"], \
        "the db-outage runbook, as the db-outage template runs it"
    cut = actions["aws:network:disrupt-connectivity"]
    assert cut["parameters"] == {"scope": "dynamodb", "duration": "PT${var.db_outage_seconds}S"}
    ((name, target),) = template["targets"].items()
    assert cut["targets"] == {"Subnets": name}
    assert target["resource_type"] == "aws:ec2:subnet"
    assert tag_of(target) == {"key": "${var.fis_target_tag_key}",
                              "value": "${var.fis_target_tag_values.private_subnets}"}
    # The private subnets carry that tag, and DynamoDB is reached through its gateway
    # endpoint there: the path the scope cuts is the path the tasks use.
    subnets = sub("network").resource("aws_subnet", "private")
    assert "var.fis_subnet_tags" in subnets["tags"]
    assert module_call("network")["fis_subnet_tags"] == \
        {"${(local.fis_tag_key)}": "${local.fis_tag_values.private_subnets}"}
    gateway = sub("network").resource("aws_vpc_endpoint", "gateway")
    assert "dynamodb" in gateway["for_each"] and gateway["vpc_endpoint_type"] == "Gateway"
    comments = (INFRA / "modules/fis/main.tf").read_text()
    assert "scoping lesson" in comments and "SQS cannot be cut" in comments


def test_worker_crash_stops_every_worker_task() -> None:
    action, _, target = template_action("worker-crash")
    assert action["action_id"] == "aws:ecs:stop-task"
    assert target["resource_type"] == "aws:ecs:task" and target["selection_mode"] == "ALL"
    assert tag_of(target) == {"key": "${var.fis_target_tag_key}",
                              "value": '${var.fis_target_tag_values["order-worker"]}'}
    assert list(sub("fis").locals["templates_worker"]) == ["worker-crash"], \
        "filtered by local.has_worker"
    assert sub("fis").locals["has_worker"] == '${contains(var.services, "order-worker")}'


def test_reader_loss_reboots_the_tagged_reader() -> None:
    action, parameters, target = template_action("reader-loss")
    assert action["action_id"] == "aws:rds:reboot-db-instances"
    assert list(action["targets"]) == ["DBInstances"]
    assert parameters == {"forceFailover": "false"}
    assert target["resource_type"] == "aws:rds:db"
    assert tag_of(target) == {"key": "${var.fis_target_tag_key}",
                              "value": "${var.fis_target_tag_values.aurora_reader}"}
    reader = sub("aurora").resource("aws_rds_cluster_instance", "reader")
    writer = sub("aurora").resource("aws_rds_cluster_instance", "writer")
    assert "var.fis_reader_tags" in reader["tags"] and "fis_reader_tags" not in writer["tags"]
    assert module_call("aurora")["fis_reader_tags"] == \
        {"${(local.fis_tag_key)}": "${local.fis_tag_values.aurora_reader}"}


def test_every_fault_has_its_template_output() -> None:
    from chaos_lab.model import Fault
    from chaos_lab.targets.aws import (
        DEPLOYMENT_FAULTS,
        FIS_FAULTS,
        TEMPLATES_OUTPUT,
        TRAFFIC_FAULTS,
    )

    assert set(FIS_FAULTS) | set(DEPLOYMENT_FAULTS) | set(TRAFFIC_FAULTS) == set(Fault), \
        "every fault has an AWS twin"
    assert {twin for twin in TRAFFIC_FAULTS.values() if twin} <= FIS_FAULTS
    assert set(FIS_FAULTS) == set(templates()), "each FIS fault's template, by the fault's name"
    # rolling-deploy is ECS's, not FIS's: the driver needs the cluster and the service names.
    for name in ("ecs_cluster_name", "ecs_service_names"):
        assert name in root().outputs
    assert squash(root().outputs["ecs_service_names"]["value"]) == \
        "${{forname,serviceinmodule.service:name=>service.service_name}}"
    assert set(DEPLOYMENT_FAULTS.values()) <= set(root().locals["services"])
    assert root().outputs[TEMPLATES_OUTPUT]["value"] == "${try(module.fis.template_ids, {})}"
    assert squash(sub("fis").outputs["template_ids"]["value"]) == \
        "${{forname,templateinaws_fis_experiment_template.this:name=>template.id}}"


def test_dashboard_shows_what_the_experiments_watch() -> None:
    observability = sub("observability")
    body = str([observability.resource("aws_cloudwatch_dashboard", "this"), observability.locals])
    for metric in ("RequestCount", "HTTPCode_ELB_5XX_Count", "TargetResponseTime",
                   "HealthyHostCount", "ClientConnections", "DatabaseConnections",
                   "ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"):
        assert metric in body, metric


# What the AWS experiment driver reads ----------------------------------------------------


def test_outputs_give_the_driver_what_it_needs() -> None:
    missing = set(REQUIRED_OUTPUTS) - set(root().outputs)
    assert not missing, f"chaos_lab.targets.aws reads outputs infra/ does not have: {missing}"
    assert root().outputs["enable_proxy"]["value"] == "${var.enable_proxy}"
    assert root().outputs["enable_degradation"]["value"] == "${var.enable_degradation}"
    for name in ("proxy_endpoint", "proxy_reader_endpoint", "cluster_writer_endpoint",
                 "fis_template_ids", "fis_report_bucket", "ecr_repositories"):
        assert name in root().outputs
    for name, output in root().outputs.items():
        assert not output.get("sensitive"), f"{name}: outputs hold no secrets"


# The one-owner design (issue 19): DynamoDB is the store of record while the database is out --


def statement_of(policy: str, sid: str) -> str:
    (found,) = [st for st in statements(policy) if f'Sid="{sid}"' in st]
    return found


def test_orders_record_and_the_worker_decides_through_the_undecided_index() -> None:
    policies = root().locals["task_policies"]
    table = "Resource=[module.messaging.order_status_table_arn]"
    record = statement_of(policies["orders"], "RecordOrders")
    assert policy_actions(record) == {"dynamodb:PutItem", "dynamodb:GetItem",
                                      "dynamodb:ConditionCheckItem", "dynamodb:DescribeTable"}
    assert table in record
    assert not any("dynamodb:" in st and "RecordOrders" not in st
                   for st in statements(policies["orders"]) if "kms:" not in st)
    decide = statement_of(policies["order-worker"], "DecideOrders")
    assert policy_actions(decide) == {
        "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem",
        "dynamodb:BatchWriteItem", "dynamodb:UpdateItem", "dynamodb:DescribeTable"}
    assert table in decide
    query = statement_of(policies["order-worker"], "FindUndecidedOrders")
    assert policy_actions(query) == {"dynamodb:Query"}
    assert "Resource=[module.messaging.order_status_undecided_index_arn]" in query
    assert "dynamodb:Query" not in decide, "a query on the index only, never on the table"
    # The queue stays: its message wakes the worker up.
    assert '"sqs:SendMessage"' in squash(policies["orders"])
    assert '"sqs:ReceiveMessage"' in squash(policies["order-worker"])


def test_orders_run_as_a_fleet_by_default() -> None:
    services = root().locals["services"]
    assert services["orders"]["min_tasks"] == "${var.orders_min_count}"
    assert root().variables["orders_min_count"]["default"] >= 2
    assert services["orders"]["max_tasks"] == \
        "${max(var.orders_min_count, var.service_max_count)}"
    call = module_call("service")
    assert call["desired_count"] == call["min_capacity"] == "${each.value.min_tasks}"
    assert call["max_capacity"] == "${each.value.max_tasks}"


def test_fleet_crash_stops_every_orders_task_inside_a_database_outage() -> None:
    template = templates()["fleet-crash"]
    actions = template["actions"]
    assert actions["remove-proxy-target"] == \
        templates()["db-outage"]["actions"]["remove-proxy-target"], \
        "the db-outage runbook, as the db-outage template runs it"
    wait = actions["outage-under-way"]
    assert wait["action_id"] == "aws:fis:wait"
    assert wait["parameters"] == {"duration": "PT${var.fleet_crash_after_seconds}S"}
    stop = actions["stop-orders-tasks"]
    assert stop["action_id"] == "aws:ecs:stop-task"
    assert stop["start_after"] == ["outage-under-way"], "inside the outage, not before it"
    ((name, target),) = template["targets"].items()
    assert stop["targets"] == {"Tasks": name}
    assert target["resource_type"] == "aws:ecs:task" and target["selection_mode"] == "ALL"
    assert tag_of(target) == {"key": "${var.fis_target_tag_key}",
                              "value": '${var.fis_target_tag_values["orders"]}'}
    condition = sub("fis").variables["fleet_crash_after_seconds"]["validation"][0]["condition"]
    assert "var.fleet_crash_after_seconds < var.db_outage_seconds" in condition


def test_aws_slow_delays_the_orders_tasks_sqs_traffic_inside_a_database_outage() -> None:
    template = templates()["aws-slow"]
    assert template["actions"]["remove-proxy-target"] == \
        templates()["db-outage"]["actions"]["remove-proxy-target"], \
        "the db-outage runbook, as the lab's aws-slow takes the database out"
    action = template["actions"]["delay-aws-answers"]
    parameters = action["parameters"]
    ((name, target),) = template["targets"].items()
    assert action["targets"] == {"Tasks": name}
    assert action["action_id"] == "aws:ecs:task-network-latency"
    assert target["resource_type"] == "aws:ecs:task" and target["selection_mode"] == "ALL"
    assert tag_of(target) == {"key": "${var.fis_target_tag_key}",
                              "value": '${var.fis_target_tag_values["orders"]}'}
    assert parameters["delayMilliseconds"] == "${tostring(var.aws_slow_delay_ms)}"
    assert parameters["duration"] == "PT${var.aws_slow_seconds}S"
    assert parameters["useEcsFaultInjectionEndpoints"] == "true"
    assert parameters["sources"] == '${join(",", local.aws_slow_sources)}'
    assert sub("fis").locals["aws_slow_sources"] == [
        "sqs.${local.region}.${data.aws_partition.current.dns_suffix}"]
    # Only where the tasks carry the sidecar (a chaos deployment).
    assert "aws-slow" in sub("fis").locals["templates_chaos"]
    assert root().locals["fis_tag_values"].count("for name in keys(local.services)") == 1


# Defaults that keep data (issue 21, item 5) ------------------------------------------------


def test_aurora_keeps_a_week_of_backups_a_final_snapshot_and_refuses_deletion() -> None:
    aurora = sub("aurora")
    cluster = aurora.resource("aws_rds_cluster", "this")
    assert cluster["backup_retention_period"] == "${var.backup_retention_days}"
    assert cluster["deletion_protection"] == "${var.deletion_protection}"
    assert cluster["skip_final_snapshot"] == "${var.skip_final_snapshot}"
    assert cluster["final_snapshot_identifier"] == \
        '${var.skip_final_snapshot ? null : "${var.name}-final"}'
    variables = aurora.variables
    assert variables["backup_retention_days"]["default"] >= 7
    assert variables["deletion_protection"]["default"] is True
    assert variables["skip_final_snapshot"]["default"] is False
    call = module_call("aurora")
    assert call["backup_retention_days"] == "${var.backup_retention_days}"
    assert call["deletion_protection"] == "${var.deletion_protection}"
    assert call["skip_final_snapshot"] is False
    assert root().variables["deletion_protection"]["default"] is True
    assert root().variables["backup_retention_days"]["default"] >= 7
    assert cluster["manage_master_user_password"] is True, "RDS generates and rotates it"


def test_secrets_can_be_recovered_and_ecr_keeps_its_images() -> None:
    for secret in (sub("aurora").resource("aws_secretsmanager_secret", "app_role"),
                   root().resource("aws_secretsmanager_secret", "api_key")):
        assert secret["recovery_window_in_days"] == "${var.secret_recovery_window_days}"
    assert sub("aurora").variables["secret_recovery_window_days"]["default"] >= 7
    assert root().variables["secret_recovery_window_days"]["default"] >= 7
    assert module_call("aurora")["secret_recovery_window_days"] == \
        "${var.secret_recovery_window_days}"
    for path in ALL_MODULE_DIRS:
        assert not re.search(r"recovery_window_in_days\s*=\s*0\b", load(path).text), path.name
    ecr = sub("ecr")
    assert ecr.resource("aws_ecr_repository", "this")["force_delete"] == "${var.force_delete}"
    assert ecr.variables["force_delete"]["default"] is False
    assert "force_delete" not in module_call("ecr")
    assert sub("kms").variables["deletion_window_in_days"]["default"] == 30
    for table in sub("messaging").of_kind("aws_dynamodb_table").values():
        assert table["deletion_protection_enabled"] == "${var.deletion_protection}"
    assert module_call("messaging")["deletion_protection"] == "${var.deletion_protection}"


@pytest.mark.parametrize(("module", "name", "value"), [
    ("infra", "backup_retention_days", "1"),
    ("infra", "secret_recovery_window_days", "0"),
    ("aurora", "backup_retention_days", "6"),
    ("aurora", "secret_recovery_window_days", "0"),
])
def test_validations_refuse_settings_that_lose_data(
        tf_tmp: Path, module: str, name: str, value: str) -> None:
    if module == "infra":
        path, names = INFRA, None
        required = {"image_tag": "t", "allow_plain_http_for_lab": "true"}
    else:
        path, names, required = INFRA / "modules" / module, {name}, {}
    refused = plan_variables(path, tf_tmp, names, **required, **{name: value})
    assert not refused.ok and f"var.{name}" in refused.output, refused.output
    assert "Invalid value for variable" in refused.output, refused.output
    assert plan_variables(path, tf_tmp, names, **required).ok, "the defaults pass"


def test_state_backend_example_encrypts_and_locks() -> None:
    example = (INFRA / "backend.tf.example").read_text()
    (block,) = _clean(hcl2.loads(example))["terraform"]
    (backend,) = block["backend"]
    s3 = backend["s3"]
    assert s3["encrypt"] is True and s3["use_lockfile"] is True
    assert s3["kms_key_id"].startswith("arn:aws:kms:")
    assert not (INFRA / "backend.tf").exists(), "an example: each deployment fills in its own"


# Abuse limits at the door (issue 21, item 3) -----------------------------------------------


def test_waf_limits_order_posts_per_client_and_runs_the_managed_rule_groups() -> None:
    waf = sub("waf")
    rates = waf.locals["rate_rules"]
    orders = rates["order-posts-per-client"]
    assert orders["limit"] == "${var.order_rate_limit}"
    assert orders["scope"] == {"AndStatement": {
        "Statements": "${concat(local.order_posts, local.not_exempt)}"}}
    post, path = waf.locals["order_posts"]
    assert post["ByteMatchStatement"]["SearchString"] == "POST"
    assert post["ByteMatchStatement"]["FieldToMatch"] == {"Method": {}}
    assert post["ByteMatchStatement"]["PositionalConstraint"] == "EXACTLY"
    assert path["ByteMatchStatement"]["SearchString"] == "/orders"
    assert path["ByteMatchStatement"]["FieldToMatch"] == {"UriPath": {}}
    assert path["ByteMatchStatement"]["PositionalConstraint"] == "STARTS_WITH"
    assert rates["requests-per-client"]["limit"] == "${var.request_rate_limit}"
    assert set(waf.locals["managed_rule_groups"]) == {
        "AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet",
        "AWSManagedRulesAmazonIpReputationList"}
    priorities = [r["priority"] for r in rates.values()] + list(
        waf.locals["managed_rule_groups"].values())
    assert len(set(priorities)) == len(priorities), "each rule its own priority"
    rules = squash(waf.locals["rules"])
    assert 'Action={Block={}}' in rules and 'AggregateKeyType="IP"' in rules
    assert 'OverrideAction={None={}}' in rules and 'VendorName="AWS"' in rules
    assert waf.variables["order_rate_limit"]["default"] <= 100
    assert waf.variables["rate_limit_exempt_cidrs"]["default"] == []


def test_waf_protects_the_alb_and_logs_without_tokens() -> None:
    waf = sub("waf")
    template = squash(waf.locals["template"]["Resources"])
    assert 'Type="AWS::WAFv2::WebACL"' in template and 'Scope="REGIONAL"' in template
    assert "DefaultAction={Allow={}}" in template and "Rules=local.rules" in template
    assert 'Type="AWS::WAFv2::WebACLAssociation"' in template
    assert "ResourceArn=var.resource_arn" in template
    assert 'Type="AWS::WAFv2::LoggingConfiguration"' in template
    assert "LogDestinationConfigs=[aws_cloudwatch_log_group.this.arn]" in template
    assert 'RedactedFields=[{SingleHeader={Name="authorization"}}]' in template
    log_group = waf.resource("aws_cloudwatch_log_group", "this")
    assert log_group["name"].startswith("aws-waf-logs-"), "WAF logs only to such names"
    assert log_group["kms_key_id"] == "${var.kms_key_arn}"
    stack = waf.resource("aws_cloudformation_stack", "this")
    assert stack["template_body"] == "${jsonencode(local.template)}"
    call = module_call("waf")
    assert call["resource_arn"] == "${module.alb.arn}"
    assert call["rate_limit_exempt_cidrs"] == "${var.waf_rate_limit_exempt_cidrs}"
    validation = waf.variables["rate_limit_exempt_cidrs"]["validation"][0]["condition"]
    assert 'startswith(cidr, "0.0.0.0/")' in validation, "no exempting everyone"


def test_order_posts_can_be_authenticated_at_the_alb() -> None:
    alb = sub("alb")
    rule = alb.resource("aws_lb_listener_rule", "authenticated")
    assert squash(rule["count"]) == "${var.authentication==null?0:1}"
    assert rule["listener_arn"] == "${aws_lb_listener.https[0].arn}", "HTTPS only"
    first, forward = sorted(rule["action"], key=lambda a: a["order"])
    assert first["order"] == 1 and forward["order"] == 2
    assert squash(first["type"]) == \
        '${var.authentication.mode=="jwt"?"jwt-validation":"authenticate-oidc"}'
    blocks = {next(iter(d)) for d in first["dynamic"]}
    assert blocks == {"jwt_validation", "authenticate_oidc"}
    assert forward["type"] == "forward"
    assert forward["target_group_arn"] == \
        "${aws_lb_target_group.this[var.authentication.target].arn}"
    conditions = {next(iter(c)) for c in rule["condition"]}
    assert conditions == {"path_pattern", "http_request_method"}
    call = squash(module_call("alb")["authentication"])
    assert call.startswith("${var.order_auth==null?null:{")
    assert 'target="orders"' in call and 'methods=["POST"]' in call
    assert "path_patterns=local.services.orders.path_patterns" in call
    priority = re.search(r"priority=(\d+)", call)
    assert priority and int(priority.group(1)) < root().locals["services"]["orders"]["priority"], \
        "before the /orders route"
    assert root().variables["order_auth_client_secret"]["sensitive"] is True


@pytest.mark.parametrize(("values", "accepted", "message"), [
    ({"order_auth": '{mode="jwt",issuer="https://i/",jwks_endpoint="https://i/k"}'}, True, ""),
    ({"order_auth": '{mode="jwt",issuer="https://i/"}'}, False, "needs jwks_endpoint"),
    ({"order_auth": '{mode="basic",issuer="https://i/"}'}, False, "must be"),
])
def test_order_auth_is_validated(tf_tmp: Path, values: dict[str, str], accepted: bool,
                                 message: str) -> None:
    cert = "arn:aws:acm:eu-west-1:123456789012:certificate/x"
    plan = plan_variables(INFRA, tf_tmp, image_tag="t", certificate_arn=cert,
                          require_api_keys="false", **values)
    assert plan.ok is accepted, plan.output
    assert message in plan.output
    lab = plan_variables(INFRA, tf_tmp, image_tag="t", allow_plain_http_for_lab="true",
                         require_api_keys="false",
                         order_auth='{mode="jwt",issuer="https://i/",jwks_endpoint="https://i/k"}')
    assert not lab.ok and "order_auth needs certificate_arn" in lab.output


def test_the_example_authenticates_orders() -> None:
    """With signed API keys; order_auth is the commented-out alternative (not both)."""
    text = (INFRA / "terraform.tfvars.example").read_text()
    example = _clean(hcl2.loads(text))
    assert example["require_api_keys"] is True
    assert "order_auth" not in example
    assert re.search(r"^# require_api_keys = false\n# order_auth = \{", text, re.M)


# Egress through the VPC's endpoints (issue 21, item 6) -------------------------------------


def test_tasks_reach_aws_through_endpoints_and_the_internet_only_through_an_asked_for_nat() -> None:
    assert root().variables["aws_api_access"]["default"] == "endpoints"
    assert sub("network").variables["aws_api_access"]["default"] == "endpoints"
    egress = {(r.group, r.source): r for r in sg_rules() if r.direction == "egress"}
    anywhere = egress[("tasks", "0.0.0.0/0")]
    assert squash(anywhere.count or "") == "${local.endpoints?0:1}", "NAT only"
    assert squash(egress[("tasks", "sg:endpoints")].count or "") == "${local.endpoints?1:0}"
    gateways = [r for (group, peer), r in egress.items() if peer.startswith("prefix-list:")]
    assert [squash(str(r.count)) for r in gateways] == \
        ['${local.endpoints?toset(["s3","dynamodb"]):toset([])}']
    assert sub("security_groups").locals["endpoints"] == \
        '${var.aws_api_access == "endpoints"}'
    # The endpoints admit the tasks, and nobody else.
    assert [r.source for r in ingress("endpoints")] == ["sg:tasks"]
    assert not sub("network").of_kind("aws_vpc_security_group_ingress_rule")
    # NAT gateway, its address and route only when asked for.
    network = sub("network")
    for kind, name in (("aws_nat_gateway", "this"), ("aws_eip", "nat"),
                       ("aws_route", "private_nat")):
        assert network.resource(kind, name)["count"] == "${local.use_nat ? 1 : 0}", name
    endpoints = squash(network.locals["interface_endpoints"])
    for service in ("ecr.api", "ecr.dkr", "logs", "secretsmanager", "sqs", "kms", "sts"):
        assert f'"{service}"' in endpoints, service
    assert 'var.ssm_endpoints?["ssm","ssmmessages","ec2messages"]:[]' in endpoints
    assert module_call("network")["ssm_endpoints"] == "${local.task_fault_injection}"
    gateway = network.resource("aws_vpc_endpoint", "gateway")
    assert gateway["for_each"] == '${toset(["s3", "dynamodb"])}'
