"""A stage uses another only through its public names (its __init__), read from the source with the AST; the
layering rules themselves are import-linter contracts (pyproject.toml), run by scripts/typecheck.sh."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("trainer", "exporter", "client", "deploy", "tuning", "monitor", "api", "serving")
# Imported by name on purpose: the serving package's pure-Python options, which the light client and the API
# validate with (the package itself would pull the engine's dependencies into their import graph).
LIGHT_MODULES = {"tuneship.serving.params"}


def _reaches(path: Path, own: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tuneship."):
            parts = node.module.split(".")
            if parts[1] in STAGES and parts[1] != own and len(parts) > 2 and node.module not in LIGHT_MODULES:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: from {node.module} import ...")
    return found


def test_no_stage_reaches_into_another_stages_submodules() -> None:
    reached = []
    for stage in STAGES:
        for path in sorted((ROOT / stage).rglob("*.py")):
            reached += _reaches(path, stage)
    assert reached == [], "import it from the stage itself (add it to that stage's __init__):\n" + "\n".join(reached)


@pytest.mark.parametrize("stage", STAGES)
def test_every_public_name_of_a_stage_resolves(stage: str) -> None:
    package = importlib.import_module(f"tuneship.{stage}")
    for name in package.__all__:
        assert getattr(package, name) is not None, f"tuneship.{stage}.{name}"


def test_the_check_sees_a_reach_into_a_submodule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    sample = tmp_path / "reach.py"
    sample.write_text("from tuneship.exporter.layout import graph_model\nfrom tuneship.exporter import Pipeline\n"
                      "from tuneship.trainer.text.data import load_file\n")
    assert [line.split(": ")[0] for line in _reaches(sample, "monitor")] == ["reach.py:1", "reach.py:3"]
