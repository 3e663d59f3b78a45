"""The shop deployed by ``infra/`` (Terraform) as an experiment target: faults are FIS
experiments started from the templates Terraform made, the shop is reached through its ALB.

What it reads comes from ``terraform output -json`` (:func:`load_outputs`), so nothing is
configured twice. What it cannot do on AWS it says so:

* ``apply``: the switches are Terraform variables. A run that needs other switches than the
  deployed ones stops with the ``terraform apply`` to run, instead of measuring the wrong shop.
* ``reset``: the database sits in private subnets, out of reach from here; nothing is deleted
  from a deployment. The runner reads the starting and final stock through the public API and
  checks every order it placed by its id, so a reset is not needed for the invariants.
* ``stock_in_db`` / ``confirmed_in_db`` / ``statuses_in_db``: ``None`` (not reachable).

Every fault but one is a FIS experiment template. ``rolling-deploy`` is not a fault FIS has:
it forces a new deployment of the orders service (``ecs update-service
--force-new-deployment``), ECS replaces every task, and the restore waits for the rollout.

Every AWS call has connect and read timeouts and a bounded number of retries, and every wait
has a deadline. ``AWS_ENDPOINT_URL`` (and per-service ``AWS_ENDPOINT_URL_<SERVICE>``) are
honoured by botocore itself; ``endpoint_url`` / ``endpoints`` override them explicitly.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from chaos_lab.model import Fault, Switches, implementation
from chaos_lab.processes import LabError, run
from chaos_lab.targets.base import Say

# The outputs of infra/outputs.tf this driver reads (the infra tests check they exist).
REQUIRED_OUTPUTS = (
    "alb_url",
    "region",
    "enable_proxy",
    "enable_degradation",
    "fis_template_ids",
    "fis_db_outage_seconds",
    "order_queue_url",
    "order_dlq_url",
)
# The output that maps each FIS experiment template of the deployment by name: the lab's fault
# names (and stop-task-<service>, which no experiment of the lab starts).
TEMPLATES_OUTPUT = "fis_template_ids"
# AWS's fault registry, part 1: the faults FIS injects, each from the experiment template of
# its own name (infra/modules/fis; docs/aws.md says what each one does and cannot do).
FIS_FAULTS = frozenset({Fault.FAILOVER, Fault.DB_OUTAGE, Fault.BROWNOUT,
                        Fault.CREDENTIAL_ROTATION, Fault.AWS_OUTAGE, Fault.WORKER_CRASH,
                        Fault.READER_LOSS, Fault.AWS_SLOW, Fault.FLEET_CRASH})
# Part 2: faults FIS has no action for, done with ECS itself: the service (a key of the
# ecs_service_names output) whose every task a forced new deployment replaces.
DEPLOYMENT_FAULTS = {Fault.ROLLING_DEPLOY: "orders"}
# Part 3: faults that are traffic (the runner offers the surge against the ALB): nothing to
# break, or the FIS fault that comes first (recovery-storm: the database outage).
TRAFFIC_FAULTS: dict[Fault, Fault | None] = {Fault.SURGE: None,
                                             Fault.RECOVERY_STORM: Fault.DB_OUTAGE}
# Every fault this target implements, and how.
FAULTS: dict[Fault, str] = {
    **{fault: f"FIS template {TEMPLATES_OUTPUT}[{fault.value!r}]"
       for fault in sorted(FIS_FAULTS, key=list(Fault).index)},
    **{fault: f"ECS forced deployment of {service}"
       for fault, service in DEPLOYMENT_FAULTS.items()},
    **{fault: "the runner's surge" + (f", after FIS template {TEMPLATES_OUTPUT}"
                                      f"[{twin.value!r}]" if twin else "")
       for fault, twin in TRAFFIC_FAULTS.items()},
}
# Templates some deployments do not have (their output is null), and why.
_OPTED_IN = ("the tasks are opted in to FIS's ECS actions (the SSM sidecar) only in a chaos "
             "deployment: enable_task_fault_injection=true")
OPTIONAL_TEMPLATES = {
    Fault.BROWNOUT: _OPTED_IN,
    Fault.AWS_SLOW: _OPTED_IN,
    Fault.WORKER_CRASH: "the order-worker, and so its template, exists only with "
                        "enable_degradation=true",
}
# Faults whose template holds the database outage for db_outage_seconds.
HELD_FOR_OUTAGE_SECONDS = frozenset({Fault.DB_OUTAGE, Fault.AWS_OUTAGE, Fault.FLEET_CRASH})
# How long an experiment may take before the driver stops it, when nothing says better: a
# failover, a reboot or a rotation takes minutes; a stop-task seconds; a rolling deployment
# as long as new tasks take to pass their health checks and the old ones to drain.
EXPERIMENT_TIMEOUTS = {Fault.FAILOVER: 600.0, Fault.READER_LOSS: 900.0,
                       Fault.CREDENTIAL_ROTATION: 1200.0, Fault.WORKER_CRASH: 300.0,
                       Fault.ROLLING_DEPLOY: 1200.0}

# FIS experiment states (GetExperiment's state.status).
STARTING = frozenset({"pending", "initiating"})
TERMINAL = frozenset({"completed", "stopped", "failed", "cancelled"})

AWS_ERRORS = (BotoCoreError, ClientError, asyncio.TimeoutError, OSError)


def load_outputs(infra_dir: Path, timeout: float = 60.0) -> dict[str, Any]:
    """``terraform output -json`` of ``infra_dir``, as {name: value}."""
    cmd = ["terraform", f"-chdir={infra_dir}", "output", "-json"]
    result = run(cmd, timeout=timeout, missing="the AWS target reads `terraform output "
                                                 "-json` of the deployment")
    try:
        raw = json.loads(result.stdout or "{}")
    except json.JSONDecodeError as exc:
        raise LabError(f"`{' '.join(cmd)}` printed no JSON: {exc}") from exc
    if not raw:
        raise LabError(f"{infra_dir} has no Terraform outputs: deploy it first "
                       f"(terraform -chdir={infra_dir} apply)")
    return _unwrap(raw)


def _unwrap(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """Accept both ``terraform output -json`` ({"x": {"value": ...}}) and plain values."""
    return {name: value["value"] if isinstance(value, dict) and "value" in value else value
            for name, value in outputs.items()}


@dataclass(frozen=True)
class Deployment:
    """What ``infra/`` deployed, as far as the experiments need to know."""

    alb_url: str
    region: str
    enable_proxy: bool
    enable_degradation: bool
    templates: dict[Fault, str]  # fault -> FIS experiment template id (those deployed)
    outage_seconds: float
    queue_url: str
    dlq_url: str
    brownout_seconds: float | None = None
    aws_slow_seconds: float | None = None
    ecs_cluster: str | None = None
    ecs_services: dict[str, str] = field(default_factory=dict)  # service -> ECS service name

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, Any]) -> Deployment:
        values = _unwrap(outputs)
        missing = [name for name in REQUIRED_OUTPUTS if values.get(name) is None]
        if missing:
            raise LabError(
                f"terraform outputs lack {', '.join(missing)}: is infra/ deployed with this "
                f"version of the code? (terraform -chdir=infra apply)")
        if values.get("api_key_secret_arn") is not None:
            # The lab's clients send unsigned credentials (and compute their orders' ids for
            # the audit from them): against a shop that requires signed API keys every order
            # would be 401. Experiments run on a deployment made for them.
            raise LabError(
                "this deployment requires signed API keys on POST /orders "
                "(require_api_keys = true): the lab's clients have none. Run experiments "
                "against a chaos deployment: terraform -chdir=infra apply -var "
                "require_api_keys=false ... (docs/aws.md)")
        alb_url = str(values["alb_url"]).rstrip("/")
        if not alb_url.startswith(("http://", "https://")):
            raise LabError(f"alb_url {alb_url!r} is not an http(s) URL")
        for name in ("enable_proxy", "enable_degradation"):
            if not isinstance(values[name], bool):
                raise LabError(f"output {name} must be a boolean, not {values[name]!r}")
        try:
            outage_seconds = float(values["fis_db_outage_seconds"])
        except (TypeError, ValueError) as exc:
            raise LabError("output fis_db_outage_seconds must be a number") from exc
        brownout, aws_slow = (_seconds(values, name) for name in ("fis_brownout_seconds",
                                                                   "fis_aws_slow_seconds"))
        templates = values[TEMPLATES_OUTPUT]
        if not isinstance(templates, dict):
            raise LabError(f"output {TEMPLATES_OUTPUT} must be a map, not {templates!r}")
        services = values.get("ecs_service_names") or {}
        if not isinstance(services, dict):
            raise LabError(f"output ecs_service_names must be a map, not {services!r}")
        cluster = values.get("ecs_cluster_name")
        return cls(
            alb_url=alb_url,
            region=str(values["region"]),
            enable_proxy=values["enable_proxy"],
            enable_degradation=values["enable_degradation"],
            templates={Fault(name): str(template) for name, template in templates.items()
                       if name in FIS_FAULTS and template is not None},
            outage_seconds=outage_seconds,
            queue_url=str(values["order_queue_url"]),
            dlq_url=str(values["order_dlq_url"]),
            brownout_seconds=brownout,
            aws_slow_seconds=aws_slow,
            ecs_cluster=None if cluster is None else str(cluster),
            ecs_services={str(k): str(v) for k, v in services.items()},
        )

    def service(self, fault: Fault | str) -> tuple[str, str]:
        """The ECS cluster and service a deployment fault redeploys; a LabError that says why
        when the outputs lack them."""
        known = Fault(fault)
        wanted = DEPLOYMENT_FAULTS[known]
        service = self.ecs_services.get(wanted)
        if self.ecs_cluster is None or service is None:
            raise LabError(f"this deployment does not say which ECS service {known} redeploys: "
                           f"terraform outputs ecs_cluster_name and ecs_service_names "
                           f"[\"{wanted}\"] are missing; is infra/ deployed with this version "
                           f"of the code? (terraform -chdir=infra apply)")
        return self.ecs_cluster, service

    def template(self, fault: Fault | str) -> str:
        """The FIS template of ``fault``; a LabError that says why when there is none."""
        known = Fault(fault)
        template = self.templates.get(known)
        if template is None:
            why = OPTIONAL_TEMPLATES.get(known, "is infra/ deployed with this version of the "
                                                "code? (terraform -chdir=infra apply)")
            raise LabError(f"this deployment has no {known} template: terraform output "
                           f"{TEMPLATES_OUTPUT} has no {known.value!r}; {why}")
        return template


@dataclass
class ExperimentOutcome:
    """One FIS experiment of a run, as it ended (kept for the report)."""

    fault: str
    experiment_id: str
    template_id: str
    status: str = "pending"
    reason: str = ""
    stopped_by_us: bool = False
    stopped_because: str = ""  # a halt or a guardrail of the run: stopped on purpose

    @property
    def stopped_by_condition(self) -> bool:
        return self.status == "stopped" and not self.stopped_by_us


class AwsTarget:
    name = "aws"

    def __init__(
        self,
        deployment: Deployment,
        *,
        endpoint_url: str | None = None,
        endpoints: Mapping[str, str] | None = None,
        call_timeout: float = 10.0,
        poll_seconds: float = 5.0,
        start_timeout: float = 120.0,
        experiment_timeout: float | None = None,
        session: aioboto3.Session | None = None,
    ) -> None:
        self.deployment = deployment
        self.endpoint_url = endpoint_url
        self.endpoints = dict(endpoints or {})
        self.call_timeout = call_timeout
        self.poll_seconds = poll_seconds
        self.start_timeout = start_timeout
        self.experiment_timeout = experiment_timeout
        self.session = session or aioboto3.Session()
        self.outcomes: list[ExperimentOutcome] = []
        self._running: dict[str, ExperimentOutcome] = {}

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, Any], **options: Any) -> AwsTarget:
        return cls(Deployment.from_outputs(outputs), **options)

    @classmethod
    def from_infra(cls, infra_dir: Path = Path("infra"), **options: Any) -> AwsTarget:
        return cls.from_outputs(load_outputs(infra_dir), **options)

    # What the runner reads --------------------------------------------------------------

    @property
    def entry_url(self) -> str:
        return self.deployment.alb_url

    @property
    def health_urls(self) -> list[str]:
        """The ALB routes only /products* and /orders*: the services' /health/deep is not
        public. GET /products reads the database (its answer names its ``source``: database
        or cache); /products/1 the per-product route of the same reader."""
        return [f"{self.entry_url}/products", f"{self.entry_url}/products/1"]

    # Settings ---------------------------------------------------------------------------

    @property
    def breaker_urls(self) -> dict[str, str]:
        return {}  # the services' /health/deep is not public

    async def apply(self, switches: Switches, say: Say) -> None:
        wanted = {"enable_proxy": switches.proxy, "enable_degradation": switches.degradation}
        deployed = {"enable_proxy": self.deployment.enable_proxy,
                    "enable_degradation": self.deployment.enable_degradation}
        if wanted != deployed:
            def show(values: dict[str, bool]) -> str:
                return ", ".join(f"{k}={str(v).lower()}" for k, v in values.items())
            variables = " ".join(f"-var {k}={str(v).lower()}" for k, v in wanted.items())
            raise LabError(
                f"the AWS deployment runs {show(deployed)} but this run needs {show(wanted)}. "
                f"On AWS the switches are Terraform variables: run `terraform -chdir=infra "
                f"apply {variables} -var image_tag=<your tag>`, wait for the services to be "
                f"stable, then start the run again")
        say(f"[aws] deployment matches: {', '.join(f'{k}={v}' for k, v in deployed.items())}")

    async def reset(self) -> None:
        """Nothing to do on AWS, by design: see the module docstring."""

    # Faults: FIS experiments ------------------------------------------------------------

    async def inject(self, fault: Fault, hold: float, say: Say) -> None:
        implementation(FAULTS, fault, self.name)
        fault = Fault(fault)
        if fault in TRAFFIC_FAULTS:
            twin = TRAFFIC_FAULTS[fault]
            if twin is None:
                return  # nothing breaks: the traffic is the fault
            fault = twin
        if fault in self._running:
            raise LabError(f"a {fault} experiment ({self._running[fault].experiment_id}) is "
                           f"still running: restore it first")
        if fault in DEPLOYMENT_FAULTS:
            await self._force_new_deployment(fault, say)
            return
        template = self.deployment.template(fault)
        held = dict.fromkeys(HELD_FOR_OUTAGE_SECONDS, self.deployment.outage_seconds)
        variables = dict.fromkeys(HELD_FOR_OUTAGE_SECONDS, "db_outage_seconds")
        for timed, seconds, variable in (
                (Fault.BROWNOUT, self.deployment.brownout_seconds, "brownout_seconds"),
                (Fault.AWS_SLOW, self.deployment.aws_slow_seconds, "aws_slow_seconds")):
            if seconds is not None:
                held[timed], variables[timed] = seconds, variable
        if fault in held and hold and abs(hold - held[fault]) > 1:
            say(f"[aws] note: the FIS template holds the {fault} {held[fault]:g}s (Terraform "
                f"variable {variables[fault]}), not the {hold:g}s asked for; FIS ends it itself")
        async with self._client("fis") as fis:
            try:
                response = await self._call(fis.start_experiment(
                    experimentTemplateId=template, clientToken=str(uuid.uuid4()),
                    tags={"chaos-shop:fault": fault}))
            except AWS_ERRORS as exc:
                raise LabError(f"FIS could not start the {fault} experiment from template "
                               f"{template}: {_describe(exc)}") from exc
            experiment = response["experiment"]
            outcome = ExperimentOutcome(fault, experiment["id"], template)
            self._update(outcome, experiment)
            self.outcomes.append(outcome)
            self._running[fault] = outcome
            say(f"[aws] FIS experiment {outcome.experiment_id} started from template "
                f"{template}: {outcome.status}")
            # The fault is on once the experiment runs; a start that fails is an error now,
            # not a puzzling result two minutes later.
            deadline = time.monotonic() + self.start_timeout
            while outcome.status in STARTING:
                if time.monotonic() > deadline:
                    raise LabError(f"FIS experiment {outcome.experiment_id} ({fault}) still "
                                   f"{outcome.status} after {self.start_timeout:g}s")
                await asyncio.sleep(self.poll_seconds)
                await self._refresh(fis, outcome)
        if outcome.status == "failed":
            del self._running[fault]
            raise LabError(f"FIS experiment {outcome.experiment_id} ({fault}) failed to start: "
                           f"{outcome.reason or 'no reason given'}")
        if outcome.stopped_by_condition:
            say(self._stopped_message(outcome))
        say(f"[aws] FIS experiment {outcome.experiment_id}: {outcome.status}")

    async def restore(self, fault: Fault, say: Say) -> None:
        """Wait for the experiment to end (FIS and the outage runbook restore the fault
        themselves). Past its deadline the experiment is stopped. Idempotent. A forced
        deployment cannot be stopped: its restore waits for the rollout to complete."""
        implementation(FAULTS, fault, self.name)
        fault = Fault(fault)
        if fault in TRAFFIC_FAULTS:
            twin = TRAFFIC_FAULTS[fault]
            if twin is None:
                return
            fault = twin
        outcome = self._running.get(fault)
        if outcome is None:
            return
        if fault in DEPLOYMENT_FAULTS:
            await self._await_rollout(fault, outcome, say)
            return
        deadline = time.monotonic() + self._timeout_for(fault)
        async with self._client("fis") as fis:
            while outcome.status not in TERMINAL:
                if time.monotonic() > deadline:
                    await self._stop(fis, outcome, say)
                    break
                await asyncio.sleep(self.poll_seconds)
                await self._refresh(fis, outcome)
        del self._running[fault]
        if outcome.stopped_because and outcome.status == "stopped":
            say(f"[aws] FIS experiment {outcome.experiment_id} ({fault}) stopped: "
                f"{outcome.stopped_because}")
            return
        if outcome.status == "failed":
            raise LabError(f"FIS experiment {outcome.experiment_id} ({fault}) failed: "
                           f"{outcome.reason or 'no reason given'} (see the FIS log group)")
        if outcome.stopped_by_us and outcome.status != "stopped":
            raise LabError(f"FIS experiment {outcome.experiment_id} ({fault}) did not end "
                           f"within {self._timeout_for(fault):g}s and did not stop: "
                           f"{outcome.status}")
        if outcome.stopped_by_us:
            raise LabError(f"FIS experiment {outcome.experiment_id} ({fault}) did not end "
                           f"within {self._timeout_for(fault):g}s: stopped it")
        if outcome.stopped_by_condition:
            say(self._stopped_message(outcome))
            return
        say(f"[aws] FIS experiment {outcome.experiment_id} ({fault}) {outcome.status}")

    def fault_details(self, fault: Fault) -> dict[str, str]:
        """The FIS experiment (or ECS deployment) of a fault on, for ``chaos-shop halt``."""
        outcome = self._running.get(Fault(fault))
        if outcome is None:
            return {}
        key = "ecs_deployment_id" if Fault(fault) in DEPLOYMENT_FAULTS else "fis_experiment_id"
        return {key: outcome.experiment_id}

    async def stop(self, fault: Fault, say: Say, why: str = "the run was halted or its "
                                                             "guardrail breached") -> None:
        """End the fault now, beside FIS's own stop conditions: StopExperiment (the restore
        that follows finds it stopped). A forced deployment cannot be stopped: ECS rolls it
        on, and the restore waits for it. Idempotent."""
        outcome = self._running.get(Fault(fault))
        if outcome is None or outcome.status in TERMINAL:
            return
        if Fault(fault) in DEPLOYMENT_FAULTS:
            say(f"[aws] ECS deployment {outcome.experiment_id} cannot be stopped: waiting for "
                f"its rollout")
            return
        outcome.stopped_because = why
        async with self._client("fis") as fis:
            await self._stop(fis, outcome, say)

    async def stop_experiment(self, experiment_id: str, say: Say) -> str:
        """StopExperiment of one FIS experiment by its id (``chaos-shop halt`` after the
        runner died); its state afterwards. Stopping one that has ended does nothing."""
        outcome = ExperimentOutcome("unknown", experiment_id, "unknown",
                                    stopped_because="halted")
        async with self._client("fis") as fis:
            await self._refresh(fis, outcome)
            if outcome.status not in TERMINAL:
                await self._stop(fis, outcome, say)
        return outcome.status

    def _timeout_for(self, fault: Fault) -> float:
        if self.experiment_timeout is not None:
            return self.experiment_timeout
        # The outages: their hold plus the restore's own wait; the brownout its duration.
        if fault in HELD_FOR_OUTAGE_SECONDS:
            return self.deployment.outage_seconds + 900.0
        if fault is Fault.BROWNOUT:
            return (self.deployment.brownout_seconds or 3600.0) + 300.0
        if fault is Fault.AWS_SLOW:
            return (self.deployment.aws_slow_seconds or 3600.0) + 300.0
        return EXPERIMENT_TIMEOUTS.get(fault, 900.0)

    # rolling-deploy: ECS, not FIS ----------------------------------------------------------

    async def _force_new_deployment(self, fault: Fault, say: Say) -> None:
        """``aws ecs update-service --force-new-deployment``: ECS starts a new task for every
        running one (same task definition), then drains and stops the old ones, within the
        service's minimum healthy and maximum percent."""
        cluster, service = self.deployment.service(fault)
        async with self._client("ecs") as ecs:
            try:
                response = await self._call(ecs.update_service(
                    cluster=cluster, service=service, forceNewDeployment=True))
            except AWS_ERRORS as exc:
                raise LabError(f"ECS could not start a new deployment of {service} in "
                               f"{cluster}: {_describe(exc)}") from exc
        primary = _primary_deployment(response.get("service", {}))
        if primary is None:
            raise LabError(f"ECS started no deployment of {service} in {cluster} (no PRIMARY "
                           f"deployment in its answer)")
        outcome = ExperimentOutcome(fault, str(primary["id"]), f"{cluster}/{service}")
        outcome.status = _ROLLOUT_STATUS.get(str(primary.get("rolloutState")), "running")
        self.outcomes.append(outcome)
        self._running[fault] = outcome
        say(f"[aws] ECS deployment {outcome.experiment_id} of {service} started (forced: every "
            f"task replaced): {outcome.status}")

    async def _await_rollout(self, fault: Fault, outcome: ExperimentOutcome, say: Say) -> None:
        cluster, service = outcome.template_id.split("/", 1)
        deadline = time.monotonic() + self._timeout_for(fault)
        async with self._client("ecs") as ecs:
            while outcome.status not in TERMINAL:
                if time.monotonic() > deadline:
                    del self._running[fault]
                    raise LabError(f"ECS deployment {outcome.experiment_id} of {service} did "
                                   f"not complete within {self._timeout_for(fault):g}s: "
                                   f"{outcome.reason or outcome.status} (a deployment cannot "
                                   f"be stopped; ECS keeps rolling it)")
                await asyncio.sleep(self.poll_seconds)
                try:
                    response = await self._call(ecs.describe_services(cluster=cluster,
                                                                      services=[service]))
                except AWS_ERRORS as exc:
                    raise LabError(f"could not read ECS service {service}: "
                                   f"{_describe(exc)}") from exc
                found = [d for s in response.get("services", [])
                         for d in s.get("deployments", []) if d.get("id") == outcome.experiment_id]
                if not found:
                    outcome.status, outcome.reason = "failed", "replaced by a newer deployment"
                    break
                outcome.status = _ROLLOUT_STATUS.get(str(found[0].get("rolloutState")),
                                                     "running")
                outcome.reason = str(found[0].get("rolloutStateReason") or "")
        del self._running[fault]
        if outcome.status != "completed":
            raise LabError(f"ECS deployment {outcome.experiment_id} of {service} "
                           f"{outcome.status}: {outcome.reason or 'no reason given'} (the "
                           f"deployment circuit breaker rolls a failed one back)")
        say(f"[aws] ECS deployment {outcome.experiment_id} of {service} completed")

    async def _stop(self, fis: Any, outcome: ExperimentOutcome, say: Say) -> None:
        say(f"[aws] FIS experiment {outcome.experiment_id} still {outcome.status}: stopping it")
        outcome.stopped_by_us = True
        try:
            await self._call(fis.stop_experiment(id=outcome.experiment_id))
        except AWS_ERRORS as exc:
            raise LabError(f"could not stop FIS experiment {outcome.experiment_id}: "
                           f"{_describe(exc)}; stop it in the console") from exc
        deadline = time.monotonic() + 120
        while outcome.status not in TERMINAL and time.monotonic() < deadline:
            await asyncio.sleep(self.poll_seconds)
            await self._refresh(fis, outcome)

    @staticmethod
    def _stopped_message(outcome: ExperimentOutcome) -> str:
        return (f"[aws] FIS STOPPED experiment {outcome.experiment_id} ({outcome.fault}) "
                f"before its end: {outcome.reason or 'stopped'}. Its stop condition is the "
                f"ALB 5xx-rate alarm: customer impact crossed the threshold, so the fault was "
                f"cut short (the outage runbook still restores the proxy's target). The run "
                f"measured a shortened fault.")

    async def _refresh(self, fis: Any, outcome: ExperimentOutcome) -> None:
        try:
            response = await self._call(fis.get_experiment(id=outcome.experiment_id))
        except AWS_ERRORS as exc:
            raise LabError(f"could not read FIS experiment {outcome.experiment_id}: "
                           f"{_describe(exc)}") from exc
        self._update(outcome, response["experiment"])

    @staticmethod
    def _update(outcome: ExperimentOutcome, experiment: Mapping[str, Any]) -> None:
        state = experiment.get("state", {})
        outcome.status = str(state.get("status", "unknown"))
        reason = str(state.get("reason") or "")
        error = state.get("error") or {}
        if error:
            reason = f"{reason} ({error.get('code', '')}: {error.get('location', '')})".strip()
        outcome.reason = reason

    # Reads ------------------------------------------------------------------------------

    async def queue_depths(self) -> tuple[int, int]:
        async with self._client("sqs") as sqs:
            depths = []
            for url in (self.deployment.queue_url, self.deployment.dlq_url):
                try:
                    response = await self._call(sqs.get_queue_attributes(
                        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                                      "ApproximateNumberOfMessagesNotVisible"]))
                except AWS_ERRORS as exc:
                    raise LabError(f"could not read the depth of {url}: "
                                   f"{_describe(exc)}") from exc
                depths.append(sum(int(v) for v in response.get("Attributes", {}).values()))
        return depths[0], depths[1]

    async def undecided_orders(self) -> int | None:
        return None  # the order table's index is read by the worker's sweep there

    async def stock_in_db(self, product_id: int) -> int | None:
        return None

    async def confirmed_in_db(self, product_id: int) -> int | None:
        return None

    async def statuses_in_db(self, order_ids: list[str]) -> dict[str, str] | None:
        return None

    # AWS clients ------------------------------------------------------------------------

    def _client(self, service: str) -> Any:
        config = AioConfig(connect_timeout=self.call_timeout, read_timeout=self.call_timeout,
                           retries={"max_attempts": 3, "mode": "standard"})
        endpoint = self.endpoints.get(service, self.endpoint_url)
        options: dict[str, Any] = {"region_name": self.deployment.region, "config": config}
        if endpoint is not None:
            options["endpoint_url"] = endpoint
        return self.session.client(service, **options)

    async def _call(self, call: Any) -> Any:
        """One AWS call, bounded as a whole (connect + read timeouts times the retries)."""
        async with asyncio.timeout(self.call_timeout * 4):
            return await call


# An ECS deployment's rolloutState, as the FIS experiment states the restore already follows.
_ROLLOUT_STATUS = {"IN_PROGRESS": "running", "COMPLETED": "completed", "FAILED": "failed"}


def _primary_deployment(service: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return next((d for d in service.get("deployments", []) if d.get("status") == "PRIMARY"),
                None)


def _seconds(values: Mapping[str, Any], name: str) -> float | None:
    """An optional duration output (null in an older deployment)."""
    value = values.get(name)
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError) as exc:
        raise LabError(f"output {name} must be a number") from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', str(exc))}"
    if isinstance(exc, asyncio.TimeoutError):
        return "no answer in time"
    return f"{type(exc).__name__}: {exc}"
