"""The AWS experiment driver against moto's server over HTTP: FIS experiments that complete,
fail to start, fail, are stopped by their stop condition or overrun their deadline; the
rolling deployment ECS does instead of FIS; SQS queue depths; the switches that only Terraform
can change; the outputs it reads."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from chaos_lab.model import Fault, Switches
from chaos_lab.processes import LabError
from chaos_lab.targets.aws import (
    DEPLOYMENT_FAULTS,
    FAULTS,
    FIS_FAULTS,
    REQUIRED_OUTPUTS,
    TEMPLATES_OUTPUT,
    TRAFFIC_FAULTS,
    AwsTarget,
    Deployment,
    load_outputs,
)

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account


def client(service: str, moto_url: str) -> Any:
    return boto3.client(service, endpoint_url=moto_url, region_name=REGION)


class Said(list[str]):
    def __call__(self, message: str) -> None:
        self.append(message)

    def text(self) -> str:
        return "\n".join(self)


def create_template(moto_url: str, action_id: str) -> str:
    fis = client("fis", moto_url)
    response = fis.create_experiment_template(
        clientToken=str(uuid.uuid4()),
        description=f"test {action_id}",
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/chaos-shop-fis",
        stopConditions=[{"source": "aws:cloudwatch:alarm",
                         "value": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:5xx"}],
        targets={"cluster": {"resourceType": "aws:rds:cluster", "selectionMode": "ALL",
                             "resourceArns": [f"arn:aws:rds:{REGION}:{ACCOUNT}:cluster:shop"]}},
        actions={"fault": {"actionId": action_id, "targets": {"Clusters": "cluster"}}},
    )
    template_id: str = response["experimentTemplate"]["id"]
    return template_id


def create_service(moto_url: str, prefix: str) -> tuple[str, str]:
    """An ECS cluster with an orders service of no task (moto's deployment is then COMPLETED
    at once, as a rollout that has replaced every task)."""
    ecs = client("ecs", moto_url)
    cluster = ecs.create_cluster(clusterName=f"{prefix}-cluster")["cluster"]["clusterName"]
    family = ecs.register_task_definition(family=f"{prefix}-orders", containerDefinitions=[
        {"name": "orders", "image": "orders:t", "memory": 512}])["taskDefinition"]["family"]
    service = ecs.create_service(cluster=cluster, serviceName=f"{prefix}-orders",
                                 taskDefinition=family, desiredCount=0)["service"]["serviceName"]
    return cluster, service


def set_rollout(cluster: str, service: str, state: str) -> None:
    """What ECS would do on its own (a rollout in progress, failed): set it in moto's backend,
    which runs in this process (ThreadedMotoServer)."""
    from moto.ecs.models import ecs_backends

    deployment = ecs_backends[ACCOUNT][REGION].services[f"{cluster}:{service}"].deployments[0]
    deployment["rolloutState"] = state
    deployment["rolloutStateReason"] = f"ECS deployment {deployment['id']} {state.lower()}."


@pytest.fixture
def outputs(moto_url: str) -> dict[str, Any]:
    """What `terraform output -json` gives for a resilient deployment, on moto."""
    sqs = client("sqs", moto_url)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    cluster, service = create_service(moto_url, prefix)
    dlq = sqs.create_queue(QueueName=f"{prefix}-orders-dlq")["QueueUrl"]
    queue = sqs.create_queue(QueueName=f"{prefix}-orders")["QueueUrl"]
    values: dict[str, Any] = {
        "alb_url": "http://chaos-shop-123.elb.example/",
        "region": REGION,
        "enable_proxy": True,
        "enable_degradation": True,
        # One map, as infra/modules/fis makes it: the lab's fault names, and the stop-task
        # templates no experiment of the lab starts.
        "fis_template_ids": {
            name: create_template(moto_url, action) for name, action in {
                "failover": "aws:rds:failover-db-cluster",
                "db-outage": "aws:ssm:start-automation-execution",
                "brownout": "aws:ecs:task-network-latency",
                "credential-rotation": "aws:ssm:start-automation-execution",
                "aws-outage": "aws:network:disrupt-connectivity",
                "worker-crash": "aws:ecs:stop-task",
                "reader-loss": "aws:rds:reboot-db-instances",
                "aws-slow": "aws:ecs:task-network-latency",
                "fleet-crash": "aws:ssm:start-automation-execution",
                "stop-task-orders": "aws:ecs:stop-task",
            }.items()},
        "fis_db_outage_seconds": 180,
        "fis_brownout_seconds": 120,
        "fis_aws_slow_seconds": 90,
        "ecs_cluster_name": cluster,
        "ecs_service_names": {"catalog": f"{prefix}-catalog", "orders": service},
        "order_queue_url": queue,
        "order_dlq_url": dlq,
    }
    # The shape terraform prints: {"name": {"sensitive": false, "type": ..., "value": ...}}.
    return {k: {"sensitive": False, "type": "string", "value": v} for k, v in values.items()}


def target(outputs: dict[str, Any], moto_url: str, **options: Any) -> AwsTarget:
    options = {"poll_seconds": 0.01, "start_timeout": 5, "call_timeout": 5, **options}
    return AwsTarget.from_outputs(outputs, endpoint_url=moto_url, **options)


def set_progression(moto_url: str, times: int | None) -> None:
    """moto's FIS experiments move one state per GetExperiment (times=1), stay where they are
    (a large times), or go straight to the end (None: moto's default)."""
    base = f"{moto_url}/moto-api/state-manager"
    if times is None:
        response = httpx.post(f"{base}/unset-transition",
                              json={"model_name": "fis::experiment"}, timeout=5)
    else:
        response = httpx.post(f"{base}/set-transition", timeout=5, json={
            "model_name": "fis::experiment",
            "transition": {"progression": "manual", "times": times}})
    response.raise_for_status()


@pytest.fixture
def stepwise(moto_url: str) -> Iterator[None]:
    set_progression(moto_url, 1)
    yield
    set_progression(moto_url, None)


def force_state(experiment_id: str, status: str) -> None:
    """What AWS would do on its own (an action failing): set the state in moto's backend,
    which runs in this process (ThreadedMotoServer)."""
    from moto.fis.models import fis_backends

    fis_backends[ACCOUNT][REGION].experiments[experiment_id].status = status


# The outputs ------------------------------------------------------------------------------


def test_from_outputs_reads_terraform_output_json(outputs: dict[str, Any]) -> None:
    deployment = Deployment.from_outputs(outputs)
    assert deployment.alb_url == "http://chaos-shop-123.elb.example"
    templates = outputs[TEMPLATES_OUTPUT]["value"]
    assert deployment.templates["failover"] == templates["failover"]
    assert deployment.templates["db-outage"] == templates["db-outage"]
    assert "stop-task-orders" not in deployment.templates, "not a fault of the lab"
    assert deployment.enable_proxy is True and deployment.outage_seconds == 180


def test_missing_outputs_are_named(outputs: dict[str, Any]) -> None:
    del outputs[TEMPLATES_OUTPUT]
    outputs["order_dlq_url"] = {"value": None}
    with pytest.raises(LabError) as error:
        AwsTarget.from_outputs(outputs)
    message = str(error.value)
    assert TEMPLATES_OUTPUT in message and "order_dlq_url" in message
    assert "terraform -chdir=infra apply" in message
    with pytest.raises(LabError, match="alb_url"):
        AwsTarget.from_outputs({})


def test_a_deployment_that_requires_api_keys_is_refused(outputs: dict[str, Any]) -> None:
    """The lab's clients send no signed key: against require_api_keys every order would be
    401 (infra/main.tf's api_key_secret_arn output is null when it is off)."""
    outputs["api_key_secret_arn"] = {"value": None}
    Deployment.from_outputs(outputs)
    outputs["api_key_secret_arn"] = {"value": "arn:aws:secretsmanager:eu-west-1:1:secret:k"}
    with pytest.raises(LabError, match="require_api_keys=false"):
        Deployment.from_outputs(outputs)


def test_entry_and_health_go_through_the_alb(outputs: dict[str, Any]) -> None:
    aws = AwsTarget.from_outputs(outputs)
    assert aws.name == "aws"
    assert aws.entry_url == "http://chaos-shop-123.elb.example"
    assert aws.health_urls[0] == "http://chaos-shop-123.elb.example/products"
    assert all(u.startswith(aws.entry_url + "/products") for u in aws.health_urls), \
        "the ALB routes only /products* and /orders*"


def test_load_outputs_runs_terraform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin" / "terraform"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n"
                    "[ \"$1 $2 $3\" = \"-chdir=infra-dir output -json\" ] || exit 3\n"
                    "echo '{\"alb_url\": {\"value\": \"http://x\", \"type\": \"string\"}}'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    assert load_outputs(Path("infra-dir")) == {"alb_url": "http://x"}
    with pytest.raises(LabError, match="failed \\(3\\)"):
        load_outputs(Path("elsewhere"))
    fake.write_text("#!/bin/sh\necho '{}'\n")
    with pytest.raises(LabError, match="deploy it first"):
        load_outputs(Path("infra-dir"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(LabError, match="terraform is not installed"):
        load_outputs(Path("infra-dir"))


def test_required_outputs_are_what_from_outputs_checks() -> None:
    with pytest.raises(LabError) as error:
        Deployment.from_outputs({})
    for name in REQUIRED_OUTPUTS:
        assert name in str(error.value)


# The switches -----------------------------------------------------------------------------


async def test_apply_refuses_switches_the_deployment_does_not_have(
        outputs: dict[str, Any]) -> None:
    aws = AwsTarget.from_outputs(outputs)
    said = Said()
    with pytest.raises(LabError) as error:
        await aws.apply(Switches(proxy=False, degradation=False), said)
    message = str(error.value)
    assert "runs enable_proxy=true, enable_degradation=true" in message
    assert "-var enable_proxy=false -var enable_degradation=false" in message
    assert "terraform -chdir=infra apply" in message


async def test_apply_accepts_the_deployed_switches(outputs: dict[str, Any]) -> None:
    aws = AwsTarget.from_outputs(outputs)
    said = Said()
    await aws.apply(Switches(), said)
    assert "deployment matches" in said.text()
    outputs["enable_degradation"]["value"] = False
    await AwsTarget.from_outputs(outputs).apply(Switches(degradation=False), said)


async def test_reset_and_database_reads_say_not_reachable(outputs: dict[str, Any]) -> None:
    aws = AwsTarget.from_outputs(outputs)
    await aws.reset()
    assert await aws.stock_in_db(2) is None
    assert await aws.confirmed_in_db(2) is None
    assert await aws.statuses_in_db(["x"]) is None


# Queue depths -----------------------------------------------------------------------------


async def test_queue_depths_count_visible_and_in_flight(
        outputs: dict[str, Any], moto_url: str) -> None:
    sqs = client("sqs", moto_url)
    queue, dlq = outputs["order_queue_url"]["value"], outputs["order_dlq_url"]["value"]
    for body in ("a", "b", "c"):
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    sqs.send_message(QueueUrl=dlq, MessageBody="dead")
    sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1, VisibilityTimeout=60)
    assert await target(outputs, moto_url).queue_depths() == (3, 1)


async def test_endpoints_per_service_and_aws_endpoint_url(
        outputs: dict[str, Any], moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    only_sqs = AwsTarget.from_outputs(outputs, endpoints={"sqs": moto_url}, call_timeout=5)
    assert await only_sqs.queue_depths() == (0, 0)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)  # botocore reads it itself
    assert await AwsTarget.from_outputs(outputs, call_timeout=5).queue_depths() == (0, 0)


async def test_unreachable_queue_is_a_lab_error(outputs: dict[str, Any], moto_url: str) -> None:
    outputs["order_dlq_url"]["value"] = f"{moto_url}/{ACCOUNT}/no-such-queue"
    with pytest.raises(LabError, match="no-such-queue"):
        await target(outputs, moto_url).queue_depths()


# FIS experiments --------------------------------------------------------------------------


async def test_failover_experiment_runs_to_completion(
        outputs: dict[str, Any], moto_url: str, stepwise: None) -> None:
    aws = target(outputs, moto_url)
    said = Said()
    await aws.inject("failover", 0, said)
    (outcome,) = aws.outcomes
    assert outcome.status == "running", "inject returns once the fault is on"
    assert outcome.template_id == outputs[TEMPLATES_OUTPUT]["value"]["failover"]
    await aws.restore("failover", said)
    assert outcome.status == "completed"
    assert f"FIS experiment {outcome.experiment_id} (failover) completed" in said.text()
    experiment = client("fis", moto_url).get_experiment(id=outcome.experiment_id)["experiment"]
    assert experiment["experimentTemplateId"] == outputs[TEMPLATES_OUTPUT]["value"]["failover"]
    await aws.restore("failover", said)  # idempotent: nothing left to wait for


NEW_FAULTS = ["brownout", "credential-rotation", "aws-outage", "worker-crash", "reader-loss",
              "aws-slow", "fleet-crash"]


@pytest.mark.parametrize("fault", NEW_FAULTS)
async def test_each_new_fault_starts_its_template(
        outputs: dict[str, Any], moto_url: str, stepwise: None, fault: str) -> None:
    """`chaos-shop experiment run NAME --target aws`: the fault's FIS template, started and
    followed to its end, like the failover's."""
    aws = target(outputs, moto_url)
    said = Said()
    await aws.inject(fault, 0, said)
    (outcome,) = aws.outcomes
    template = outputs[TEMPLATES_OUTPUT]["value"][fault]
    assert outcome.template_id == template and outcome.status == "running"
    experiment = client("fis", moto_url).get_experiment(id=outcome.experiment_id)["experiment"]
    assert experiment["experimentTemplateId"] == template
    assert experiment["tags"] == {"chaos-shop:fault": fault}
    await aws.restore(fault, said)
    assert outcome.status == "completed"
    assert f"FIS experiment {outcome.experiment_id} ({fault}) completed" in said.text()


def test_every_fault_has_a_template_output_or_a_deployment(outputs: dict[str, Any]) -> None:
    deployment = Deployment.from_outputs(outputs)
    assert set(FAULTS) == set(Fault), "every fault has an AWS twin"
    assert set(deployment.templates) == set(FIS_FAULTS) == \
        set(Fault) - {"rolling-deploy", "surge", "recovery-storm"}
    assert set(DEPLOYMENT_FAULTS) == {Fault.ROLLING_DEPLOY}
    assert TRAFFIC_FAULTS == {Fault.SURGE: None, Fault.RECOVERY_STORM: Fault.DB_OUTAGE}
    assert deployment.brownout_seconds == 120 and deployment.aws_slow_seconds == 90
    assert deployment.service("rolling-deploy") == (
        outputs["ecs_cluster_name"]["value"], outputs["ecs_service_names"]["value"]["orders"])


@pytest.mark.parametrize(("fault", "why"), [("brownout", "enable_task_fault_injection=true"),
                                            ("aws-slow", "enable_task_fault_injection=true"),
                                            ("worker-crash", "enable_degradation=true")])
async def test_a_template_the_deployment_lacks_says_why(
        outputs: dict[str, Any], moto_url: str, fault: str, why: str) -> None:
    # e.g. enable_task_fault_injection=false; enable_degradation=false
    del outputs[TEMPLATES_OUTPUT]["value"][fault]
    aws = target(outputs, moto_url)
    with pytest.raises(LabError) as error:
        await aws.inject(fault, 0, Said())
    assert f"no {fault} template" in str(error.value)
    assert f"{TEMPLATES_OUTPUT} has no '{fault}'" in str(error.value)
    assert why in str(error.value)
    assert not aws.outcomes, "nothing was started"
    await aws.inject("failover", 0, Said())  # the others still run
    await aws.restore("failover", Said())


def test_a_deployment_with_fewer_templates_still_runs_its_faults(outputs: dict[str, Any]) -> None:
    for fault in NEW_FAULTS:
        del outputs[TEMPLATES_OUTPUT]["value"][fault]
    for name in ("fis_brownout_seconds", "fis_aws_slow_seconds", "ecs_service_names"):
        del outputs[name]
    deployment = Deployment.from_outputs(outputs)
    assert set(deployment.templates) == {Fault.FAILOVER, Fault.DB_OUTAGE}
    with pytest.raises(LabError, match="is infra/ deployed with this version"):
        deployment.template("reader-loss")
    with pytest.raises(LabError, match="ecs_service_names"):
        deployment.service("rolling-deploy")


async def test_brownout_and_aws_outage_holds_are_the_templates(
        outputs: dict[str, Any], moto_url: str) -> None:
    aws = target(outputs, moto_url)
    said = Said()
    await aws.inject("brownout", 30, said)
    await aws.inject("aws-outage", 30, said)
    await aws.inject("aws-slow", 30, said)
    await aws.inject("fleet-crash", 30, said)
    assert "holds the brownout 120s (Terraform variable brownout_seconds)" in said.text()
    assert "holds the aws-outage 180s (Terraform variable db_outage_seconds)" in said.text()
    assert "holds the aws-slow 90s (Terraform variable aws_slow_seconds)" in said.text()
    assert "holds the fleet-crash 180s (Terraform variable db_outage_seconds)" in said.text()
    for fault in ("brownout", "aws-outage", "aws-slow", "fleet-crash"):
        await aws.restore(fault, said)


async def test_outage_hold_is_the_templates(outputs: dict[str, Any], moto_url: str) -> None:
    aws = target(outputs, moto_url)
    said = Said()
    await aws.inject("db-outage", 10, said)
    assert "holds the db-outage 180s" in said.text() and "not the 10s" in said.text()
    await aws.restore("db-outage", said)
    assert aws.outcomes[0].status == "completed"


async def test_experiment_that_fails_to_start(outputs: dict[str, Any], moto_url: str) -> None:
    outputs[TEMPLATES_OUTPUT]["value"]["failover"] = "EXTdoesnotexist"
    aws = target(outputs, moto_url)
    with pytest.raises(LabError) as error:
        await aws.inject("failover", 0, Said())
    message = str(error.value)
    assert "FIS could not start the failover experiment" in message
    assert "EXTdoesnotexist" in message and "ResourceNotFoundException" in message
    await aws.restore("failover", Said())  # the rollback after a failed start does nothing


async def test_experiment_stopped_by_its_stop_condition_is_reported(
        outputs: dict[str, Any], moto_url: str, stepwise: None) -> None:
    aws = target(outputs, moto_url)
    said = Said()
    await aws.inject("db-outage", 180, said)
    (outcome,) = aws.outcomes
    # The 5xx alarm fires: FIS stops the experiment itself.
    client("fis", moto_url).stop_experiment(id=outcome.experiment_id)
    await aws.restore("db-outage", said)
    assert outcome.status == "stopped"
    assert outcome.stopped_by_condition and not outcome.stopped_by_us
    assert f"FIS STOPPED experiment {outcome.experiment_id} (db-outage)" in said.text()
    assert "stop condition" in said.text() and "shortened fault" in said.text()


async def test_experiment_that_fails_is_an_error(
        outputs: dict[str, Any], moto_url: str, stepwise: None) -> None:
    aws = target(outputs, moto_url)
    await aws.inject("failover", 0, Said())
    (outcome,) = aws.outcomes
    force_state(outcome.experiment_id, "failed")
    with pytest.raises(LabError, match=f"{outcome.experiment_id} \\(failover\\) failed"):
        await aws.restore("failover", Said())
    await aws.restore("failover", Said())  # reported once, then nothing left


async def test_experiment_failing_at_start_is_an_error(
        outputs: dict[str, Any], moto_url: str, monkeypatch: pytest.MonkeyPatch,
        stepwise: None) -> None:
    aws = target(outputs, moto_url)
    original = AwsTarget._update

    def fail_when_initiating(outcome: Any, experiment: Any) -> None:
        if experiment.get("state", {}).get("status") == "initiating":
            force_state(experiment["id"], "failed")
            experiment = {**experiment, "state": {"status": "failed",
                                                  "reason": "Target resolution failed"}}
        original(outcome, experiment)

    monkeypatch.setattr(AwsTarget, "_update", staticmethod(fail_when_initiating))
    with pytest.raises(LabError, match="failed to start: Target resolution failed"):
        await aws.inject("failover", 0, Said())


async def test_experiment_past_its_deadline_is_stopped(
        outputs: dict[str, Any], moto_url: str, stepwise: None) -> None:
    aws = target(outputs, moto_url, experiment_timeout=0)
    said = Said()
    await aws.inject("failover", 0, said)
    set_progression(moto_url, 3)  # slower: still running when the deadline passes
    with pytest.raises(LabError, match="did not end within 0s: stopped it"):
        await aws.restore("failover", said)
    outcome = aws.outcomes[0]
    assert outcome.status == "stopped" and outcome.stopped_by_us
    assert not outcome.stopped_by_condition
    assert "stopping it" in said.text()


async def test_one_experiment_per_fault_at_a_time(
        outputs: dict[str, Any], moto_url: str, stepwise: None) -> None:
    aws = target(outputs, moto_url)
    await aws.inject("failover", 0, Said())
    with pytest.raises(LabError, match="still running"):
        await aws.inject("failover", 0, Said())
    await aws.restore("failover", Said())
    with pytest.raises(LabError, match="unknown fault"):
        await aws.inject("meteor", 0, Said())


def test_outputs_fixture_matches_terraform_json_shape(outputs: dict[str, Any]) -> None:
    assert json.loads(json.dumps(outputs))["alb_url"]["value"].startswith("http")


# rolling-deploy: ECS, not FIS ------------------------------------------------------------


def ecs_deployments(moto_url: str, outputs: dict[str, Any]) -> list[dict[str, Any]]:
    described = client("ecs", moto_url).describe_services(
        cluster=outputs["ecs_cluster_name"]["value"],
        services=[outputs["ecs_service_names"]["value"]["orders"]])
    deployments: list[dict[str, Any]] = described["services"][0]["deployments"]
    return deployments


async def test_rolling_deploy_forces_a_new_deployment_of_orders(
        outputs: dict[str, Any], moto_url: str) -> None:
    """`chaos-shop experiment run rolling-deploy --target aws`: no FIS template, `ecs
    update-service --force-new-deployment` of the orders service; the restore waits for the
    rollout."""
    (before,) = ecs_deployments(moto_url, outputs)
    experiments = len(client("fis", moto_url).list_experiments()["experiments"])
    aws = target(outputs, moto_url)
    said = Said()
    await aws.inject("rolling-deploy", 0, said)
    (outcome,) = aws.outcomes
    (after,) = ecs_deployments(moto_url, outputs)
    assert after["id"] != before["id"] and outcome.experiment_id == after["id"]
    assert outcome.template_id.endswith("/" + outputs["ecs_service_names"]["value"]["orders"])
    assert "forced: every task replaced" in said.text()
    with pytest.raises(LabError, match="still running"):
        await aws.inject("rolling-deploy", 0, said)
    await aws.restore("rolling-deploy", said)
    assert outcome.status == "completed"
    assert f"ECS deployment {outcome.experiment_id} of " in said.text()
    await aws.restore("rolling-deploy", said)  # idempotent
    assert len(client("fis", moto_url).list_experiments()["experiments"]) == experiments, \
        "no FIS experiment"


async def test_rolling_deploy_waits_for_the_rollout_and_reports_a_failed_one(
        outputs: dict[str, Any], moto_url: str) -> None:
    cluster = outputs["ecs_cluster_name"]["value"]
    service = outputs["ecs_service_names"]["value"]["orders"]
    aws = target(outputs, moto_url)
    set_rollout(cluster, service, "IN_PROGRESS")
    await aws.inject("rolling-deploy", 0, Said())
    assert aws.outcomes[0].status == "running"
    set_rollout(cluster, service, "FAILED")
    with pytest.raises(LabError, match=r"failed: ECS deployment .* failed.*circuit breaker"):
        await aws.restore("rolling-deploy", Said())
    set_rollout(cluster, service, "IN_PROGRESS")
    slow = target(outputs, moto_url, experiment_timeout=0)
    await slow.inject("rolling-deploy", 0, Said())
    with pytest.raises(LabError, match=r"did not complete within 0s.*cannot be stopped"):
        await slow.restore("rolling-deploy", Said())
    await slow.restore("rolling-deploy", Said())  # reported once, then nothing left


async def test_rolling_deploy_without_the_service_outputs_says_why(
        outputs: dict[str, Any], moto_url: str) -> None:
    del outputs["ecs_service_names"]
    aws = target(outputs, moto_url)
    with pytest.raises(LabError, match="ecs_service_names"):
        await aws.inject("rolling-deploy", 0, Said())
    assert not aws.outcomes


async def test_a_stop_ends_the_fis_experiment_at_once(
        outputs: dict[str, Any], moto_url: str, stepwise: None) -> None:
    """A halted run or a breached guardrail: StopExperiment now, beside FIS's own stop
    conditions; the restore that follows finds it stopped and says why, no error."""
    aws = target(outputs, moto_url)
    said = Said()
    await aws.inject("failover", 0, said)
    set_progression(moto_url, 1000)  # it would run on for a long time
    await aws.stop("failover", said, why="guardrail max_failed_requests_in_window")
    outcome = aws.outcomes[0]
    assert outcome.status == "stopped" and not outcome.stopped_by_condition
    await aws.restore("failover", said)
    assert "stopped: guardrail max_failed_requests_in_window" in said.text()
    await aws.stop("failover", said)  # idempotent: nothing running
    assert await aws.stop_experiment(outcome.experiment_id, said) == "stopped"
