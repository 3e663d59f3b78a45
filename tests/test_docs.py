"""The docs never contradict the files: every setting documented with its default, every
path they name exists, every experiment of the catalog in the README's table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chaos_lab.model import catalog
from shop.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]
TOP = ("src/", "services/", "tests/", "scripts/", "docs/", "deploy/", "infra/", "loadtest/",
       "requirements/", "experiments/", ".ci/")
# Files a reader makes from an example the repository has (named in the docs as such).
MADE_BY_THE_READER = {"infra/terraform.tfvars", "infra/backend.tf"}


def settings_rows() -> dict[str, str]:
    """``SHOP_NAME`` -> its default, from docs/configuration.md's table (rows that name
    several settings give their defaults in order, separated by " / ")."""
    rows: dict[str, str] = {}
    for line in (ROOT / "docs" / "configuration.md").read_text().splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) != 3 or not cells[0].startswith("`SHOP_"):
            continue
        names = re.findall(r"`(SHOP_[A-Z_]+)`", cells[0])
        defaults = [d.strip() for d in cells[1].removesuffix(" s").split(" / ")]
        for name, default in zip(names, defaults if len(defaults) == len(names)
                                 else [cells[1]] * len(names), strict=True):
            rows[name] = default.strip("`")
    return rows


def test_every_setting_is_documented_with_its_default() -> None:
    rows = settings_rows()
    for name, field in Settings.model_fields.items():
        variable = f"SHOP_{name.upper()}"
        assert variable in rows, f"{variable} is not in docs/configuration.md"
        default = field.get_default(call_default_factory=True)
        shown = rows[variable]
        if default is None:
            assert shown in ("none", "the writer"), (variable, shown)
        elif isinstance(default, bool):
            assert shown == str(default).lower(), (variable, shown)
        elif isinstance(default, int | float):
            assert float(shown.split()[0]) == float(default), (variable, shown, default)
        elif isinstance(default, dict):
            assert shown == "{}", (variable, shown)
        else:
            assert shown == str(default), (variable, shown, default)
    documented = set(rows) - {f"SHOP_{n.upper()}" for n in Settings.model_fields}
    assert not documented, f"documented but not a setting: {sorted(documented)}"


def named_paths(text: str) -> set[str]:
    """Paths of the repository named in backticks or links (placeholders left out)."""
    found = set(re.findall(r"`([^`\s]+)`", text)) | set(re.findall(r"\]\(([^)\s#]+)", text))
    return {p.rstrip(".,:;") for p in found
            if p.startswith(TOP) and not any(c in p for c in "<>*{}$")}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_path_the_docs_name_exists(doc: Path) -> None:
    missing = sorted(p for p in named_paths(doc.read_text())
                     if p not in MADE_BY_THE_READER and not (ROOT / p.split(":")[0]).exists()
                     and not (doc.parent / p).exists())
    assert not missing, f"{doc.name} names paths that do not exist: {missing}"


def test_the_readme_catalog_table_has_every_experiment() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## The fault catalog"):]
    for name in catalog():
        assert f"`{name}`" in table, f"{name} is missing from README's catalog table"
