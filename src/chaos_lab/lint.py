"""Every problem of an experiment file at once, each located: the file, the field's path and
the line the YAML gives it (``chaos-shop experiment validate``, and every load).

Pydantic stops at a model whose fields fail before its own checks run (the fault's window
against the traffic's, the fault's options); here each part is also checked on its own, and
every preset against the file, so one run shows every mistake. A chaostoolkit experiment is
recognised and told so. ``schema()`` is the format as a JSON Schema, made from the model
(``chaos-shop experiment schema``; published as docs/experiment.schema.json).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]
from pydantic import BaseModel, ValidationError

from chaos_lab.model import (
    FAULT_OPTIONS,
    NOT_HERE,
    PRESET_PARTS,
    Abort,
    ExperimentFile,
    Fault,
    FaultOptions,
    FaultSpec,
    Hypothesis,
    Timing,
    check_timing,
)
from loadtest.traffic import Traffic

PARTS: dict[str, type[BaseModel]] = {"fault": FaultSpec, "timing": Timing, "traffic": Traffic,
                                     "hypothesis": Hypothesis, "abort": Abort}
SHAPE = ("name, description, fault: {name, hold, options}, timing: {fault_at, duration}, "
         "traffic, fragile: {proxy, degradation}, hypothesis: {max_failed_requests, "
         "max_p99_latency_ms, max_recovery_seconds, ...}, abort, presets")
CHAOSTOOLKIT_KEYS = ("steady-state-hypothesis", "method", "rollbacks", "title")


@dataclass(frozen=True)
class Problem:
    file: Path
    where: str  # the field's path: hypothesis.max_failed, presets.short.timing.duration
    message: str
    line: int | None = None  # 1-based, where the YAML gives it

    def __str__(self) -> str:
        at = f"{self.file}:{self.line}" if self.line else str(self.file)
        return f"{at}: {self.where}: {self.message}" if self.where else f"{at}: {self.message}"


def problems(path: Path) -> list[Problem]:
    """Every problem of the file at ``path``; empty when it is a valid experiment."""
    try:
        text = path.read_text()
    except OSError as exc:
        return [Problem(path, "", f"cannot read it: {exc.strerror or exc}")]
    return problems_in(text, path)


def problems_in(text: str, path: Path) -> list[Problem]:
    try:
        raw = yaml.safe_load(text)
        lines = _lines(yaml.compose(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        what = getattr(exc, "problem", None) or str(exc)
        return [Problem(path, "", f"not valid YAML: {what}",
                        None if mark is None else mark.line + 1)]
    if raw is None:
        return [Problem(path, "", f"the file is empty; an experiment is a mapping: {SHAPE} "
                                  f"(`chaos-shop experiment schema` prints its format)")]
    if not isinstance(raw, dict):
        return [Problem(path, "", f"an experiment is a mapping ({SHAPE}), not a "
                                  f"{_kind(raw)}", 1)]
    if _chaostoolkit(raw):
        found = ", ".join(k for k in CHAOSTOOLKIT_KEYS if k in raw)
        return [Problem(path, "", f"this is a chaostoolkit experiment (it has {found}): run it "
                                  f"with chaostoolkit (`chaos run {path.name}`). chaos-shop "
                                  f"files look like: {SHAPE}; `chaos-shop experiment schema` "
                                  f"prints the format, the catalog's failover.yaml is one", 1)]
    return Checker(path, raw, lines).run()


class Checker:
    def __init__(self, path: Path, raw: dict[str, Any], lines: dict[tuple[str, ...], int]):
        self.path, self.raw, self.lines = path, raw, lines
        self.found: list[Problem] = []
        self._seen: set[tuple[str, str]] = set()

    def add(self, loc: tuple[str, ...], message: str) -> None:
        where = ".".join(loc)
        if (where, message) in self._seen:
            return
        self._seen.add((where, message))
        self.found.append(Problem(self.path, where, message, self._line(loc)))

    def _line(self, loc: tuple[str, ...]) -> int | None:
        for end in range(len(loc), -1, -1):  # the deepest part of the path the YAML has
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return None

    def run(self) -> list[Problem]:
        try:
            ExperimentFile.model_validate(self.raw)
        except ValidationError as exc:
            self.pydantic(exc, (), ExperimentFile)
        self.fault_and_timing(self.raw.get("fault"), self.raw.get("timing"), ())
        self.presets()
        return sorted(self.found, key=lambda p: p.line or 0)  # stable: the model's order

    def pydantic(self, exc: ValidationError, prefix: tuple[str, ...],
                 model: type[BaseModel]) -> None:
        for error in exc.errors():
            loc = tuple(str(p) for p in error["loc"])
            if error["type"] == "value_error" and loc in ((), ("fault",)):
                continue  # the model's own checks: made part by part below
            if error["type"] == "missing":
                message = "missing (required)"
            elif error["type"] == "extra_forbidden":
                message = NOT_HERE.get(loc, "unknown field (a typo?)")
                if loc not in NOT_HERE:
                    message += _did_you_mean(model, loc)
            else:
                message = error["msg"].removeprefix("Value error, ")
            self.add(prefix + loc, message)

    def fault_and_timing(self, fault: Any, timing: Any, prefix: tuple[str, ...]) -> None:
        """The fault's options as the fault takes them, and its window within the traffic:
        whatever else is wrong."""
        spec = _valid(FaultSpec, {**fault, "options": {}}) if isinstance(fault, dict) else None
        given = fault.get("options") or {} if isinstance(fault, dict) else {}
        window: float | None = 0.0  # the options' own (None: unknown, they are wrong)
        if spec is not None and isinstance(given, dict):
            options = FAULT_OPTIONS.get(spec.name, FaultOptions)
            try:
                window = options.model_validate(given).lasts
            except ValidationError as exc:
                window = None
                known = ", ".join(options.model_fields) or "no options"
                for error in exc.errors():
                    loc = tuple(str(p) for p in error["loc"])
                    message = error["msg"]
                    if error["type"] == "extra_forbidden":
                        message = f"unknown option ({spec.name.value} takes {known})"
                        message += _close(loc[-1], list(options.model_fields))
                    self.add((*prefix, "fault", "options", *loc), message)
        timing_ = _valid(Timing, timing)
        if timing_ is not None:
            try:  # without a valid fault or options, what can be checked without them
                check_timing(timing_, spec.hold if spec is not None else 0.0, window or 0.0)
            except ValueError as exc:
                self.add((*prefix, "timing"), str(exc))

    def presets(self) -> None:
        presets = self.raw.get("presets")
        if not isinstance(presets, dict):
            return
        for name, overrides in presets.items():
            where = ("presets", str(name))
            if not isinstance(overrides, dict):
                continue  # pydantic said so
            merged: dict[str, Any] = {}
            for part, values in overrides.items():
                if part not in PRESET_PARTS:
                    self.add((*where, str(part)), f"a preset overrides "
                             f"{', '.join(PRESET_PARTS)}, not {part}"
                             + _close(str(part), list(PRESET_PARTS)))
                    continue
                if not isinstance(values, dict):
                    continue  # pydantic said so
                base = self.raw.get(part)
                merged[part] = {**(base if isinstance(base, dict) else {}), **values}
                try:
                    PARTS[part].model_validate(merged[part])
                except ValidationError as exc:
                    own = _errors(PARTS[part], base)
                    for error in exc.errors():
                        loc = tuple(str(p) for p in error["loc"])
                        if (loc, error["msg"]) in own:
                            continue  # the file's own problem, said once already
                        if error["type"] == "value_error" and not loc:
                            continue  # the fault's options: below
                        message = ("unknown field (a typo?)" + _did_you_mean(PARTS[part], loc)
                                   if error["type"] == "extra_forbidden"
                                   else error["msg"].removeprefix("Value error, "))
                        self.add((*where, part, *loc), message)
            if "fault" in merged or "timing" in merged:
                before = len(self.found)
                self.fault_and_timing(merged.get("fault", self.raw.get("fault")),
                                      merged.get("timing", self.raw.get("timing")), where)
                # a problem the file has without the preset is the file's, said already
                self.found[before:] = [p for p in self.found[before:]
                                       if not self._files_own(p, where)]

    def _files_own(self, problem: Problem, where: tuple[str, ...]) -> bool:
        prefix = ".".join(where) + "."
        own = problem.where.removeprefix(prefix)
        return any(p.where == own and p.message == problem.message for p in self.found)


def _valid(model: type[BaseModel], data: Any) -> Any:
    if not isinstance(data, dict):
        return None
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


def _errors(model: type[BaseModel], data: Any) -> set[tuple[tuple[str, ...], str]]:
    try:
        model.model_validate(data if isinstance(data, dict) else {})
    except ValidationError as exc:
        return {(tuple(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()}
    return set()


def _did_you_mean(model: type[BaseModel], loc: tuple[str, ...]) -> str:
    """The model the unknown field sits in, and the closest field it has."""
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        inner = [a for a in getattr(annotation, "__args__", (annotation,))
                 if isinstance(a, type) and issubclass(a, BaseModel)]
        if not inner:
            return ""
        model = inner[0]
    return _close(loc[-1], list(model.model_fields))


def _close(name: str, known: list[str]) -> str:
    match = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean {match[0]}?" if match else ""


def _chaostoolkit(raw: dict[str, Any]) -> bool:
    return ("steady-state-hypothesis" in raw or "method" in raw
            or ("title" in raw and "name" not in raw))


def _kind(value: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number",
            bool: "boolean"}.get(type(value), type(value).__name__)


def _lines(node: yaml.Node | None, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    """Each field's line (1-based), by its path, from the YAML's node tree."""
    out: dict[tuple[str, ...], int] = {}
    if node is None:
        return out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            here = (*path, str(key.value))
            out[here] = key.start_mark.line + 1
            out.update({k: v for k, v in _lines(value, here).items() if k != here})
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.update(_lines(item, (*path, str(i))))
    return out


# The format as a JSON Schema -------------------------------------------------------------


def schema() -> dict[str, Any]:
    """The experiment file's format, from the model: each fault's options as that fault
    takes them, presets as partial overrides. Editors (YAML language servers) and CI linters
    read it; ``chaos-shop experiment validate`` says more (lines, the timing, presets)."""
    out = ExperimentFile.model_json_schema()
    defs: dict[str, Any] = out.setdefault("$defs", {})
    cases = []
    for fault in Fault:
        options = FAULT_OPTIONS.get(fault)
        if options is None:
            then: dict[str, Any] = {"type": "object", "maxProperties": 0,
                                    "description": f"{fault.value} takes no options"}
        else:
            own = options.model_json_schema()
            defs.update(own.pop("$defs", {}))
            defs[options.__name__] = own
            then = {"$ref": f"#/$defs/{options.__name__}"}
        cases.append({"if": {"properties": {"name": {"const": fault.value}}},
                      "then": {"properties": {"options": then}}})
    defs["FaultSpec"]["allOf"] = cases
    partial = {}
    for part, model in PARTS.items():
        name = model.__name__
        copy = {k: v for k, v in defs[name].items() if k not in ("required", "allOf")}
        partial[part] = {**copy, "title": f"{name} (overrides)"}
    out["properties"]["presets"]["additionalProperties"] = {
        "type": "object", "additionalProperties": False, "properties": partial,
        "description": "overrides of the file's parts, for this preset"}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "chaos-shop experiment file",
            "description": "An experiment of the chaos-shop lab (chaos_lab.model.ExperimentFile)",
            **{k: v for k, v in out.items() if k != "title"}}
