"""The lab's vocabulary, typed once: the shop's settings and their switches, the fault catalog,
an experiment file (YAML: the catalog's under ``chaos_lab/experiments/``, or one's own) and its
hypothesis with tolerances.

The words, one meaning each: the shop runs with its **settings**, ``fragile`` or
``resilient``; a settings is a value of the two **switches** (``Switches``: the database
proxy, degradation). The resilient settings have both on (``RESILIENT_SWITCHES``); the
fragile ones are what an experiment file's ``fragile:`` block says. A comparison runs
**BEFORE**, the run with the fragile settings, then **AFTER**, the run with the resilient
settings; only AFTER decides the verdict.

An experiment is data, as in chaostoolkit: a fault with its options, when it strikes and for
how long, the traffic it strikes under, the fragile settings, a steady-state hypothesis whose
tolerances the resilient settings must meet, and guardrails (``abort:``) past which a run
stops. Presets (``short``) override parts of it. A file is validated whole when it is loaded,
presets included, and every mistake is reported as ``file:line: field: what is wrong``
(chaos_lab.lint).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, TypeVar, runtime_checkable

import yaml  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from chaos_lab.processes import LabError
from loadtest.traffic import Traffic, TrafficProfile

# Switches --------------------------------------------------------------------------------

PROXY_ENV, DEGRADATION_ENV = "SHOP_ENABLE_PROXY", "SHOP_ENABLE_DEGRADATION"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class Switches(BaseModel):
    """The shop's two switches: the database proxy, and degradation (cache + queue). A
    value of both is a settings: resilient (both on) or fragile (a file's ``fragile:``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    proxy: bool = True
    degradation: bool = True

    def env(self) -> dict[str, str]:
        """As the services read them (``SHOP_*`` settings)."""
        return {PROXY_ENV: str(self.proxy).lower(), DEGRADATION_ENV: str(self.degradation).lower()}

    @classmethod
    def from_env(cls, settings: Mapping[str, str]) -> Switches:
        """Read back from ``SHOP_*`` settings as pydantic-settings reads them (a missing one
        takes the services' default: on). The one place a switch is parsed."""
        def one(name: str) -> bool:
            value = settings.get(name)
            if value is None:
                return True
            lowered = value.strip().lower()
            if lowered in _TRUE or lowered in _FALSE:
                return lowered in _TRUE
            raise LabError(f"{name}={value!r} is not a boolean")
        return cls(proxy=one(PROXY_ENV), degradation=one(DEGRADATION_ENV))

    def __str__(self) -> str:
        return f"proxy={str(self.proxy).lower()} degradation={str(self.degradation).lower()}"


# The resilient settings (every switch on: the AFTER run's), and the one the bench compares
# with (the proxy without degradation: no cache, no queue).
RESILIENT_SWITCHES = Switches()
NO_DEGRADATION_SWITCHES = Switches(proxy=True, degradation=False)


# Faults ----------------------------------------------------------------------------------


class Fault(StrEnum):
    """The fault catalog. Adding a fault: a member here, then one entry in each target's
    registry (``targets.local.FAULTS``, ``targets.compose.FAULTS``, ``targets.aws.FAULTS``)."""

    FAILOVER = "failover"
    DB_OUTAGE = "db-outage"
    BROWNOUT = "brownout"
    CREDENTIAL_ROTATION = "credential-rotation"
    AWS_OUTAGE = "aws-outage"
    WORKER_CRASH = "worker-crash"
    READER_LOSS = "reader-loss"
    AWS_SLOW = "aws-slow"
    FLEET_CRASH = "fleet-crash"
    ROLLING_DEPLOY = "rolling-deploy"
    SURGE = "surge"
    RECOVERY_STORM = "recovery-storm"


T = TypeVar("T")


@runtime_checkable
class TakesFaultOptions(Protocol):
    """A target whose faults take the experiment's ``fault.options`` (told before inject)."""

    def fault_options(self, fault: Fault, options: FaultOptions) -> None: ...


def fault_named(name: str | Fault) -> Fault:
    """The one "unknown fault" error."""
    try:
        return Fault(name)
    except ValueError:
        raise LabError(f"unknown fault {name!r}; the catalog has "
                       f"{', '.join(f.value for f in Fault)}") from None


def implementation(registry: Mapping[Fault, T], fault: str | Fault, target: str) -> T:
    """A target's implementation of ``fault``: an unknown name and a fault this target does
    not implement (yet) are both a LabError that says so."""
    known = fault_named(fault)
    if known not in registry:
        raise LabError(f"the {target} target does not implement the {known.value} fault; it "
                       f"implements {', '.join(f.value for f in registry)}")
    return registry[known]


# An experiment file ----------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FaultOptions(_Strict):
    """A fault's own options (``fault.options`` in a file), and the one place a fault is
    described: each fault has its class here, whose docstring says what the fault does to
    the shop (whatever the target: each target's registry says how it makes it), whose fields
    are its options, and whose ``HOLD`` says what the file's ``fault.hold`` means for it
    (``chaos-shop experiment describe FAULT``, ``experiment list --faults``)."""

    HOLD: ClassVar[str] = "seconds until the restore; 0: restored once the traffic ends"

    @property
    def lasts(self) -> float:
        """Seconds the injection itself takes (a window it holds before it returns)."""
        return 0.0


class FailoverOptions(FaultOptions):
    """Aurora's forced failover: the writer crashes; while the reader is promoted, the
    writer AND reader endpoints have nobody to route to for ``unreachable`` seconds (the
    proxy holds new connections, then refuses them); then both follow the new writer."""

    HOLD: ClassVar[str] = ("seconds from the crash until the old writer is rebuilt as a "
                           "replica of the new one (the restore); 0: after the traffic. The "
                           "outage itself is ``unreachable``")

    unreachable: float = Field(20.0, ge=0, le=600, description=(
        "seconds the writer AND the reader are out of reach (the proxy holds or refuses "
        "connections) before the promoted writer answers"))

    @property
    def lasts(self) -> float:
        return self.unreachable


class DbOutageOptions(FaultOptions):
    """The database proxy loses its target (deregister-db-proxy-targets on AWS): no
    database at all, new connections refused and open ones dropped. No options."""

    HOLD: ClassVar[str] = ("seconds without a database; then the proxy gets its target back; "
                           "0: until the traffic ends")


class BrownoutOptions(FaultOptions):
    """The database answers, ``delay`` seconds late (every answer): slow, not down."""

    HOLD: ClassVar[str] = "seconds the database is slow; 0: until the traffic ends"

    delay: float = Field(3.0, gt=0, le=60, description="seconds every database answer is "
                                                        "delayed")


class CredentialRotationOptions(FaultOptions):
    """The app roles' passwords change in PostgreSQL, and ``gap`` seconds later at their
    source (the proxy's and the services'): new connections meet the new password first."""

    HOLD: ClassVar[str] = ("seconds until the restore, which publishes the new passwords if "
                           "the inject did not get to it; 0: after the traffic (the rotation "
                           "completes by itself after ``gap``)")

    gap: float = Field(5.0, ge=0, le=600, description=(
        "seconds between the new password in PostgreSQL and at its source (the proxy's "
        "userlist and the services' password files)"))

    @property
    def lasts(self) -> float:
        return self.gap


class AwsOutageOptions(FaultOptions):
    """AWS (SQS, DynamoDB) stops answering while the database is out too: connections
    accepted, nothing answered. No options."""

    HOLD: ClassVar[str] = ("seconds both are out; then AWS answers and the database is back; "
                           "0: until the traffic ends")


class WorkerCrashOptions(FaultOptions):
    """The database is out for ``outage`` seconds (orders are queued), then the
    order-worker is killed (SIGKILL) with some in flight as the database comes back."""

    HOLD: ClassVar[str] = ("seconds from the outage's start until the worker is started again "
                           "(the restore); 0: after the traffic")

    outage: float = Field(8.0, gt=0, le=600, description=(
        "seconds the database is out first, so that orders are queued and the worker holds "
        "some in flight when it is killed"))

    @property
    def lasts(self) -> float:
        return self.outage


class ReaderLossOptions(FaultOptions):
    """The reader (the replica) is lost: the reader endpoint moves to the writer, and commits
    stop waiting for a synchronous standby that is gone. No options."""

    HOLD: ClassVar[str] = ("seconds without the replica; then it is back, streaming and "
                           "synchronous, behind the reader endpoint; 0: until the traffic ends")


class AwsSlowOptions(FaultOptions):
    """The database is out and the order queue (SQS) answers ``delay`` seconds late: each
    order's wake-up has an unknown outcome; the order table holds the order all the same."""

    HOLD: ClassVar[str] = ("seconds of both (the database out, SQS late); 0: until the traffic "
                           "ends")

    delay: float = Field(1.0, gt=0, le=60, description=(
        "seconds every answer of the order queue (SQS) comes late, while the database is out: "
        "later than SHOP_AWS_REQUEST_TIMEOUT, so that each wake-up's outcome is unknown"))


class FleetCrashOptions(FaultOptions):
    """The database is out, orders are taken into the order table, and ``kill_after``
    seconds later every orders process is killed at once (SIGKILL); their supervisors start
    new ones."""

    HOLD: ClassVar[str] = ("seconds of the database outage, from its start to its restore "
                           "(which waits for every orders process to serve); 0: until the "
                           "traffic ends")

    kill_after: float = Field(5.0, ge=0, le=600, description=(
        "seconds into the database outage when every orders process is killed (SIGKILL), "
        "orders being taken into the order table meanwhile; their supervisors start new ones"))

    @property
    def lasts(self) -> float:
        return self.kill_after


class RollingDeployOptions(FaultOptions):
    """Each orders process replaced in turn under traffic (a new one serves before the old
    one is stopped with SIGTERM), ``pause`` seconds between two: a rolling deployment."""

    HOLD: ClassVar[str] = ("seconds until the restore, which makes sure every orders process "
                           "serves (on AWS: waits for the rollout); 0: after the traffic")

    pause: float = Field(2.0, ge=0, le=600, description=(
        "seconds between one orders process replaced and the next"))


class SurgeOptions(FaultOptions):
    """More orders than the shop can take (loadtest.surge): a probe measures its capacity in
    the same run, then orders are offered open loop at ``factor`` times it."""

    HOLD: ClassVar[str] = ("nothing breaks: the surge is the fault, and lasts ``probe`` + "
                           "``seconds``; hold only delays the (empty) restore")

    factor: float = Field(5.0, gt=0, le=50, description="times the capacity offered")
    seconds: float = Field(30.0, gt=0, le=600, description="how long the surge lasts")
    probe: float = Field(5.0, gt=0, le=60, description=(
        "seconds of the capacity probe before it (closed loop, 32 clients)"))
    resend: Literal["never", "at-once", "backoff"] = Field("never", description=(
        "what the surge's clients do with a failed try: give up, resend it at once (a retry "
        "storm), or back off within a retry budget"))

    @property
    def lasts(self) -> float:
        return self.probe + self.seconds


class RecoveryStormOptions(SurgeOptions):
    """The database out for the fault's hold (orders accepted into the order table meanwhile),
    then back while a surge hits: the backlog drains under live traffic."""

    HOLD: ClassVar[str] = ("seconds of the database outage; the surge (``probe`` + "
                           "``seconds``) follows its restore")

    @property
    def lasts(self) -> float:
        return 0.0  # the hold (the outage) comes first; the surge follows the restore


# Every fault's options (its description and what its hold means: the class's docstring and
# HOLD); a fault whose class has no fields takes none (``options`` must then be empty).
FAULT_OPTIONS: dict[Fault, type[FaultOptions]] = {
    Fault.FAILOVER: FailoverOptions,
    Fault.DB_OUTAGE: DbOutageOptions,
    Fault.BROWNOUT: BrownoutOptions,
    Fault.CREDENTIAL_ROTATION: CredentialRotationOptions,
    Fault.AWS_OUTAGE: AwsOutageOptions,
    Fault.WORKER_CRASH: WorkerCrashOptions,
    Fault.READER_LOSS: ReaderLossOptions,
    Fault.AWS_SLOW: AwsSlowOptions,
    Fault.FLEET_CRASH: FleetCrashOptions,
    Fault.ROLLING_DEPLOY: RollingDeployOptions,
    Fault.SURGE: SurgeOptions,
    Fault.RECOVERY_STORM: RecoveryStormOptions,
}
# The faults that are traffic, not a broken part: the runner offers it itself, against the
# target's entry, whatever the target (the target's registry still says what goes with it).
TRAFFIC_FAULTS = frozenset({Fault.SURGE, Fault.RECOVERY_STORM})


@dataclass(frozen=True)
class FaultOption:
    name: str
    default: str
    accepts: str  # its type and bounds: "seconds > 0, <= 60", "never | at-once | backoff"
    description: str


@dataclass(frozen=True)
class FaultDoc:
    """A fault as its options class describes it."""

    fault: Fault
    what: str
    hold: str
    options: list[FaultOption]


def describe(fault: Fault) -> FaultDoc:
    cls = FAULT_OPTIONS.get(fault, FaultOptions)
    options = []
    for name, info in cls.model_fields.items():
        choices = getattr(info.annotation, "__args__", None)
        if choices and all(isinstance(c, str) for c in choices):
            accepts = " | ".join(choices)
        else:
            kind = {"float": "number", "int": "integer"}.get(
                getattr(info.annotation, "__name__", ""), str(info.annotation))
            bounds = [f"{sign} {getattr(m, attr):g}" for m in info.metadata
                      for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
                      if getattr(m, attr, None) is not None]
            accepts = " ".join([kind, ", ".join(bounds)]).strip()
        default = info.default if not isinstance(info.default, float) else f"{info.default:g}"
        options.append(FaultOption(name, str(default), accepts, info.description or ""))
    what = " ".join((cls.__doc__ or "").split()).replace("``", "`")
    return FaultDoc(fault, what, cls.HOLD.replace("``", "`"), options)


def fault_options(fault: Fault, options: Mapping[str, Any] | None = None) -> FaultOptions:
    """``options`` validated as ``fault`` takes them (defaults for the ones not given)."""
    return FAULT_OPTIONS.get(fault, FaultOptions).model_validate(dict(options or {}))


class FaultSpec(_Strict):
    name: Fault = Field(description="the fault (`chaos-shop experiment list --faults`)")
    hold: float = Field(0, ge=0, description=(
        "seconds from the inject until the restore; what that is for each fault: "
        "`chaos-shop experiment describe FAULT` (0: restored once the traffic ends)"))
    options: dict[str, Any] = Field(default_factory=dict, description=(
        "the fault's own options, e.g. brownout's delay (`chaos-shop experiment describe "
        "FAULT`)"))

    @model_validator(mode="after")
    def _options_fit(self) -> FaultSpec:
        try:
            fault_options(self.name, self.options)
        except ValidationError as exc:
            known = ", ".join(FAULT_OPTIONS.get(self.name, FaultOptions).model_fields) or "none"
            problems = "; ".join(
                f"options.{'.'.join(str(p) for p in e['loc'])}: "
                + ("unknown option" if e["type"] == "extra_forbidden" else e["msg"])
                for e in exc.errors())
            raise ValueError(f"{problems} ({self.name.value} takes: {known})") from None
        return self

    @property
    def parsed_options(self) -> FaultOptions:
        return fault_options(self.name, self.options)


class Timing(_Strict):
    fault_at: float = Field(ge=0, description="seconds after the traffic starts")
    duration: float = Field(gt=0, description="seconds of traffic")


class Hypothesis(_Strict):
    """The steady-state hypothesis: what the customer may see at most while the fault lasts,
    and what must be true afterwards."""

    max_failed_requests: int = Field(ge=0, description=(
        "reads + writes whose last try failed (5xx, timeout, refused): clients retry a "
        "failed try with the same key and body, 3 tries at most"))
    max_lost_orders: int = Field(0, ge=0, description="accepted (201/202), never decided")
    max_false_answers: int = Field(0, ge=0, description=(
        "answers the database contradicts after the drain (chaos_lab.audit): 201 not "
        "confirmed, 4xx or 503 for a confirmed order, 503 after it was accepted"))
    max_p99_latency_ms: float = Field(gt=0, description="p99 of every request during the "
                                                        "fault, failures included")
    max_p50_latency_ms: float | None = Field(None, gt=0, description=(
        "p50 (median) of the same requests; absent: measured, not judged"))
    max_recovery_seconds: float = Field(ge=0, description="from the fault to the last failure")
    # A surge's goals (surge, recovery-storm); absent: measured and shown, not judged.
    min_goodput_ratio: float | None = Field(None, gt=0, description=(
        "orders decided (201 + 409) per second during the surge, over the capacity the probe "
        "measured in the same run"))
    max_admitted_p99_ms: float | None = Field(None, gt=0, description=(
        "p99 of the answers that were not shed (not 503) during the surge"))
    max_shed_p99_ms: float | None = Field(None, gt=0, description=(
        "p99 of the shed answers (503) during the surge: refused at once"))
    max_wait_ms: float | None = Field(None, gt=0, description=(
        "the longest any try waited, time queued before the shop included"))
    max_settle_seconds: float | None = Field(None, ge=0, description=(
        "from the surge's end until the customers' p99 is back to its pre-surge value"))
    stock_consistent: bool = True
    dlq_empty: bool = True
    healthy_after: bool = True


class FailedInWindow(_Strict):
    requests: int = Field(ge=0, description=(
        "requests whose last try failed (5xx, timeout, refused), at most, in the window"))
    seconds: float = Field(gt=0, le=600, description="the window: the last this many seconds")


class P99InWindow(_Strict):
    ms: float = Field(gt=0, description=(
        "p99 latency of the tries answered (or timed out) in the window, at most"))
    seconds: float = Field(gt=0, le=600, description="the window: the last this many seconds")


class Abort(_Strict):
    """Guardrails: limits past which the run stops, checked every second while the traffic
    runs, against the tries as they end (chaos_lab.guardrails). A breach restores the fault at
    once (on AWS the FIS experiment is stopped, beside its own stop conditions) and ends the
    run aborted, with the reason. They see what is known live: failed requests and latency.
    False answers are not known live: only once the queue has drained is every answer held
    against the database (the hypothesis' max_false_answers judges them)."""

    max_failed_requests_in_window: FailedInWindow | None = Field(None, description=(
        "stop when more requests than this failed in the last seconds, e.g. "
        "{requests: 5, seconds: 10}"))
    max_p99_ms_in_window: P99InWindow | None = Field(None, description=(
        "stop when the p99 latency of the last seconds is over this, e.g. "
        "{ms: 3000, seconds: 10}"))


# Unknown fields a file may well try, and why they are not there.
NOT_HERE: dict[tuple[str, ...], str] = {
    ("abort", "max_false_answers"): (
        "false answers cannot be a guardrail: they are known only after the drain, when the "
        "audit holds every answer against the database; the hypothesis' max_false_answers "
        "judges them. Live, a guardrail sees failed requests and latency"),
}

PRESET_PARTS = ("fault", "timing", "traffic", "hypothesis", "abort")


def _merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` laid over it, nested parts merged (a preset's
    ``fault: {options: {seconds: 10}}`` keeps the file's other options)."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


class ExperimentFile(_Strict):
    """An experiment file: the catalog's (``chaos-shop experiment list``; failover.yaml is the
    one to copy) or one's own. ``chaos-shop experiment schema`` prints this as a JSON Schema,
    ``chaos-shop experiment validate`` checks files against it."""

    name: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = ""
    fault: FaultSpec
    timing: Timing
    traffic: Traffic = Traffic()
    fragile: Switches = Field(description=(
        "the fragile settings' switches: the BEFORE run's (the resilient settings, the AFTER "
        "run's, have both on)"))
    hypothesis: Hypothesis
    abort: Abort = Field(default_factory=Abort, description=(
        "guardrails: when to stop the run early (none by default)"))
    drain_timeout: float = Field(300.0, gt=0, description="seconds to wait for the queue")
    presets: dict[str, dict[str, dict[str, Any]]] = Field(
        default_factory=dict, description=(
            "name -> overrides of fault/timing/traffic/hypothesis/abort"))

    @model_validator(mode="after")
    def _fault_fits(self) -> ExperimentFile:
        check_timing(self.timing, self.fault.hold, self.fault.parsed_options.lasts)
        return self

    def preset(self, name: str) -> ExperimentFile:
        """This experiment with a preset's overrides ("default": as written)."""
        if name == "default" and name not in self.presets:
            return self
        if name not in self.presets:
            raise LabError(f"{self.name} has no preset {name!r}; it has "
                           f"{', '.join(['default', *sorted(self.presets)])}")
        data = _merged(self.model_dump(mode="json"), self.presets[name])
        data["presets"] = {}
        return ExperimentFile.model_validate(data)

    def resolve(self, preset: str = "default", scale: float = 1.0,
                source: Path | None = None) -> Experiment:
        if not (scale > 0 and math.isfinite(scale)):
            raise LabError("scale must be a positive number")
        chosen = self.preset(preset)
        traffic = TrafficProfile(**chosen.traffic.scaled(scale).model_dump(),
                                 duration=chosen.timing.duration)
        return Experiment(
            name=chosen.name, description=chosen.description, fault=chosen.fault.name,
            hold=chosen.fault.hold, options=chosen.fault.parsed_options,
            fault_at=chosen.timing.fault_at, traffic=traffic,
            fragile=chosen.fragile, hypothesis=chosen.hypothesis, abort=chosen.abort,
            drain_timeout=chosen.drain_timeout, preset=preset, source=source)


def check_timing(timing: Timing, hold: float, window: float) -> None:
    """The fault's window within the traffic (its recovery must be measured): ``hold`` and
    ``window`` (its options' own, ``FaultOptions.lasts``) from ``fault_at``."""
    if timing.fault_at >= timing.duration:
        raise ValueError(f"timing.fault_at ({timing.fault_at:g}) must come before the end of "
                         f"the traffic (timing.duration {timing.duration:g})")
    lasts = max(hold, window)
    if timing.fault_at + lasts > timing.duration:
        raise ValueError(f"the fault ends at {timing.fault_at + lasts:g}s (fault_at + "
                         f"fault.hold or its options' window), after the traffic "
                         f"({timing.duration:g}s): the recovery would not be measured")


@dataclass(frozen=True)
class Experiment:
    """One experiment, preset applied: what the runner runs."""

    name: str
    fault: Fault
    fault_at: float
    hold: float
    traffic: TrafficProfile  # the file's, scaled, for timing.duration
    fragile: Switches
    hypothesis: Hypothesis
    description: str = ""
    drain_timeout: float = 300.0
    preset: str = "default"
    source: Path | None = None
    options: FaultOptions = field(default_factory=FaultOptions)
    abort: Abort = field(default_factory=Abort)

    @property
    def duration(self) -> float:
        """Seconds of traffic (the file's timing.duration)."""
        return self.traffic.duration


class ExperimentFileError(LabError):
    """An experiment file that cannot be read or does not follow the schema."""


def load(path: Path) -> ExperimentFile:
    """Read and validate a file, presets included; a file with problems is an
    ExperimentFileError with every one of them, each as ``file:line: field: what is wrong``
    (chaos_lab.lint)."""
    from chaos_lab.lint import problems

    found = problems(path)
    if found:
        raise ExperimentFileError("\n".join(
            [f"{path}: {len(found)} problem{'s' if len(found) > 1 else ''}",
             *(f"  {p}" for p in found)]))
    return ExperimentFile.model_validate(yaml.safe_load(path.read_text()))


# Where the experiments are ---------------------------------------------------------------

# The catalog ships with the package (package data): a wheel has it as a checkout does
# (whose experiments/ at the top is a link to it).
EXPERIMENTS_DIR = Path(__file__).resolve().parent / "experiments"


def catalog(folder: Path = EXPERIMENTS_DIR) -> dict[str, Path]:
    """The experiment files of a folder, by name (the file's stem)."""
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}


def find(name_or_path: str, folder: Path = EXPERIMENTS_DIR) -> Path:
    """A catalog name (``failover``) or a path to a file of one's own."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ExperimentFileError(f"{path}: no such file")
        return path
    known = catalog(folder)
    if name_or_path not in known:
        raise ExperimentFileError(f"unknown experiment {name_or_path!r}; {folder} has "
                                  f"{', '.join(known) or 'none'} (or give a path to a .yaml)")
    return known[name_or_path]


# The verdict -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One tolerance of the hypothesis, what was measured, and whether it holds."""

    name: str  # failed_requests, lost_orders, ...
    rule: str  # how the measured value must relate to the tolerance: <=, is
    tolerance: float | bool
    measured: float | bool | None  # None: could not be measured (which fails the check)
    passed: bool
    unit: str = ""
    unmeasured: str = "unknown"  # what None means here

    @property
    def title(self) -> str:
        return self.name.replace("_", " ")

    def shown(self, value: float | bool | None) -> str:
        if value is None:
            return self.unmeasured
        if isinstance(value, bool):
            return "yes" if value else "no"
        return f"{value:g}{self.unit}"

    @property
    def expected(self) -> str:
        return f"{self.rule} {self.shown(self.tolerance)}" if self.rule != "is" \
            else self.shown(self.tolerance)


@dataclass(frozen=True)
class Measured:
    failed_requests: int
    lost_orders: int
    p99_latency_ms: float | None  # during the fault
    recovery_seconds: float | None  # None: failures until the end, no recovery
    stock_consistent: bool | None
    dlq: int  # -1: the queue service did not answer
    healthy_after: bool
    p50_latency_ms: float | None = None  # during the fault
    false_answers: int | None = 0  # the answer audit's; None: it could not be made
    surge: SurgeFigures | None = None  # a surge's, where there was one


@dataclass(frozen=True)
class SurgeFigures:
    """What a surge measured (loadtest.surge, chaos_lab.experiment.surge_figures)."""

    capacity: float  # orders decided per second, closed loop, before the surge
    offered: float  # orders per second offered during it
    goodput: float  # orders decided (201 + 409) per second during it
    admitted_p99_ms: float | None  # answers not shed, during it
    shed_p99_ms: float | None  # 503 answers, during it
    wait_ms: float | None  # the longest any try waited, surge and customers
    settle_seconds: float | None  # from its end until the customers' p99 is back; None: never

    @property
    def goodput_ratio(self) -> float | None:
        return round(self.goodput / self.capacity, 3) if self.capacity > 0 else None


def judge(h: Hypothesis, m: Measured) -> list[Check]:
    """Every tolerance against what was measured; an unmeasured value fails its check. A
    tolerance the hypothesis does not set (``max_p50_latency_ms``) is no check at all."""
    def most(name: str, limit: float, value: float | None, unit: str = "",
             unmeasured: str = "unknown") -> Check:
        return Check(name, "<=", limit, value, value is not None and value <= limit, unit,
                     unmeasured)

    def must(name: str, wanted: bool, value: bool | None) -> Check:
        return Check(name, "is", True, value, value is True or not wanted)

    dlq_empty = None if m.dlq < 0 else m.dlq == 0
    p50 = [] if h.max_p50_latency_ms is None else [
        most("p50_latency_during_fault", h.max_p50_latency_ms, m.p50_latency_ms, " ms")]
    return [*_judge_surge(h, m.surge, most), *_judge_common(h, m, most, must, dlq_empty, p50)]


def _judge_surge(h: Hypothesis, surge: SurgeFigures | None,
                 most: Callable[..., Check]) -> list[Check]:
    """A surge's goals, those the hypothesis sets (unmeasured without a surge: failed)."""
    checks = []
    if h.min_goodput_ratio is not None:
        ratio = surge.goodput_ratio if surge is not None else None
        checks.append(Check("goodput_ratio", ">=", h.min_goodput_ratio, ratio,
                            ratio is not None and ratio >= h.min_goodput_ratio))
    for name, limit, unit, value in (
            ("admitted_p99_during_surge", h.max_admitted_p99_ms, " ms",
             surge and surge.admitted_p99_ms),
            ("shed_p99_during_surge", h.max_shed_p99_ms, " ms", surge and surge.shed_p99_ms),
            ("longest_wait", h.max_wait_ms, " ms", surge and surge.wait_ms),
            ("settle_after_surge", h.max_settle_seconds, " s", surge and surge.settle_seconds)):
        if limit is not None:
            checks.append(most(name, limit, value, unit,
                               "never" if name == "settle_after_surge" else "unknown"))
    return checks


def _judge_common(h: Hypothesis, m: Measured, most: Callable[..., Check],
                  must: Callable[..., Check], dlq_empty: bool | None,
                  p50: list[Check]) -> list[Check]:
    return [
        most("failed_requests", h.max_failed_requests, m.failed_requests),
        most("lost_orders", h.max_lost_orders, m.lost_orders),
        most("false_answers", h.max_false_answers, m.false_answers),
        *p50,
        most("p99_latency_during_fault", h.max_p99_latency_ms, m.p99_latency_ms, " ms"),
        most("recovery_time", h.max_recovery_seconds, m.recovery_seconds, " s", "never"),
        must("stock_consistent", h.stock_consistent, m.stock_consistent),
        must("dlq_empty", h.dlq_empty, dlq_empty),
        must("healthy_after", h.healthy_after, m.healthy_after),
    ]
