"""Linting experiment files: every problem of every file at once, each located (file, line,
field); `experiment validate`, `experiment list` and `gameday` exit 2 on any; a chaostoolkit
file is told so; the published JSON Schema is the model's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import yaml  # type: ignore[import-untyped]
from typer.testing import CliRunner

from chaos_lab.cli import app
from chaos_lab.lint import problems, schema
from chaos_lab.model import EXPERIMENTS_DIR, catalog

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]

# Five mistakes of four kinds: a field error used to hide the options, the timing check and
# the presets (four runs to see them all).
FIVE = """\
name: five
fault:
  name: failover
  options:
    unreachabel: 20
timing: {fault_at: 30, duration: 40}
fragile: {proxy: false, degradation: false}
hypothesis:
  max_failed_requests: 0
  max_p99_latency_ms: 1000
  max_recovery_seconds: 10
  max_false_answer: 0
presets:
  short:
    timing: {fault_at: 6, duration: -24}
    hypothesis: {max_p99_latency_ms: fast}
  long:
    timing: {fault_at: 50}
"""


def test_every_problem_at_once_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "five.yaml"
    path.write_text(FIVE)
    found = [str(p) for p in problems(path)]
    assert found == [
        f"{path}:5: fault.options.unreachabel: unknown option (failover takes unreachable); "
        "did you mean unreachable?",
        f"{path}:12: hypothesis.max_false_answer: unknown field (a typo?); did you mean "
        "max_false_answers?",
        f"{path}:15: presets.short.timing.duration: Input should be greater than 0",
        f"{path}:16: presets.short.hypothesis.max_p99_latency_ms: Input should be a valid "
        "number, unable to parse string as a number",
        f"{path}:18: presets.long.timing: timing.fault_at (50) must come before the end of "
        "the traffic (timing.duration 40)",
    ]
    # the option fixed: the fault's window is known, and the file's own timing is wrong too
    path.write_text(FIVE.replace("unreachabel", "unreachable"))
    assert f"{path}:6: timing: the fault ends at 50s" in "\n".join(map(str, problems(path)))


def test_empty_not_a_mapping_not_yaml_and_chaostoolkit_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    [problem] = problems(empty)
    assert "the file is empty; an experiment is a mapping: name, description, fault" \
        in problem.message and "NoneType" not in problem.message
    listed = tmp_path / "list.yaml"
    listed.write_text("- name: x\n")
    assert "not a list" in problems(listed)[0].message
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nfault: [1, 2\n")
    [problem] = problems(broken)
    assert problem.message.startswith("not valid YAML") and problem.line == 3
    toolkit = tmp_path / "expired-certificate.json"
    toolkit.write_text(json.dumps({
        "version": "1.0.0", "title": "What is the impact of an expired certificate?",
        "steady-state-hypothesis": {"title": "Application responds", "probes": []},
        "method": [{"type": "action", "name": "expire"}], "rollbacks": []}))
    [problem] = problems(toolkit)
    assert problem.message.startswith("this is a chaostoolkit experiment (it has "
                                      "steady-state-hypothesis, method, rollbacks, title): run "
                                      "it with chaostoolkit (`chaos run expired-certificate.json`"
                                      "). chaos-shop files look like: name, description, fault")


def test_validate_lints_files_and_the_catalog(tmp_path: Path) -> None:
    five, empty = tmp_path / "five.yaml", tmp_path / "empty.yaml"
    five.write_text(FIVE)
    empty.write_text("")
    result = runner.invoke(app, ["experiment", "validate", str(five), str(empty)])
    assert result.exit_code == 2
    assert result.output.count(f"{five}:") == 5 and f"{empty}: the file is empty" in \
        result.output
    assert "2 of 2 files invalid, 6 problems" in result.output
    result = runner.invoke(app, ["experiment", "validate"])
    assert result.exit_code == 0, result.output
    assert f"{len(catalog())} files valid" in result.output


def test_list_exits_2_when_a_file_is_invalid(tmp_path: Path) -> None:
    shutil.copy(EXPERIMENTS_DIR / "failover.yaml", tmp_path)
    (tmp_path / "five.yaml").write_text(FIVE)
    result = runner.invoke(app, ["experiment", "list", "--experiments-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "invalid" in result.output and "experiment validate" in result.output


def test_gameday_says_every_problem_of_every_file_before_running_anything(
        tmp_path: Path) -> None:
    folder = tmp_path / "catalog"
    folder.mkdir()
    shutil.copy(EXPERIMENTS_DIR / "failover.yaml", folder)
    (folder / "five.yaml").write_text(FIVE)
    (folder / "empty.yaml").write_text("")
    result = runner.invoke(app, ["gameday", "--experiments-dir", str(folder), "--lab-dir",
                                 str(tmp_path / "lab"), "--preset", "short"])
    assert result.exit_code == 2
    assert result.output.count("five.yaml:") == 5 and "empty.yaml: the file is empty" in \
        result.output
    assert "gameday: 6 problems; nothing was run" in result.output
    assert not (tmp_path / "lab").exists()


def test_the_published_schema_is_the_models() -> None:
    published = ROOT / "docs" / "experiment.schema.json"
    assert json.loads(published.read_text()) == schema(), (
        "docs/experiment.schema.json is not the model's: chaos-shop experiment schema > "
        "docs/experiment.schema.json")
    result = runner.invoke(app, ["experiment", "schema"])
    assert result.exit_code == 0 and json.loads(result.output) == schema()


def test_the_schema_takes_the_catalog_and_refuses_mistakes() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())
    validator = jsonschema.Draft202012Validator(schema())
    for path in catalog().values():
        assert not list(validator.iter_errors(yaml.safe_load(path.read_text()))), path
    wrong = {m.message for m in validator.iter_errors(yaml.safe_load(FIVE))}
    assert "Additional properties are not allowed ('unreachabel' was unexpected)" in wrong
    assert "-24 is less than or equal to the minimum of 0" in wrong
    brownout = yaml.safe_load((EXPERIMENTS_DIR / "brownout.yaml").read_text())
    brownout["fault"]["options"] = {"unreachable": 3}  # failover's option on a brownout
    assert list(validator.iter_errors(brownout))
