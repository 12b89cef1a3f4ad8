"""The repository's file names are spelled in one module (tuneship/repository/files.py). The Python models Triton
runs (copied into repositories, where tuneship is not installed) keep their own copies, which must agree."""

from __future__ import annotations

import ast
from pathlib import Path

from tuneship.repository import files as repository_files

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("trainer", "exporter", "deploy", "client", "tuning", "search", "datacheck", "monitor", "api", "tuneship",
          "serving")
NAMES = {repository_files.LABELS_FILE, repository_files.REPORT_FILE, repository_files.SOURCE_FILE,
         repository_files.ADAPTER_INFO, repository_files.UPDATES_LOG, repository_files.UPDATE_REPORT,
         repository_files.TUNING_REPORT}
# Code that runs inside Triton reads these files without tuneship: its own spelling, checked below.
SERVED = {"exporter/triton_models/postprocess.py", "serving/triton/generator.py", "serving/adapters.py"}
OWNER = "tuneship/repository/files.py"


def _literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in NAMES]


def test_the_repository_names_are_spelled_only_in_their_module() -> None:
    found = []
    for stage in STAGES:
        for path in sorted((ROOT / stage).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative in SERVED or relative == OWNER:
                continue
            found += [f"{relative}:{line}: {value!r}" for line, value in _literals(path)]
    assert not found, "use tuneship.repository's names instead of:\n" + "\n".join(found)


def test_the_served_models_spell_them_as_the_module_does() -> None:
    spelled = {value for relative in SERVED for _, value in _literals(ROOT / relative)}
    assert spelled <= NAMES and repository_files.LABELS_FILE in spelled and repository_files.SOURCE_FILE in spelled


def test_the_serving_engine_names_the_adapters_as_the_repository_does() -> None:
    from tuneship.serving import adapters

    assert (adapters.ADAPTERS_DIR, adapters.INFO_FILE, adapters.WEIGHTS_FILE) == (
        repository_files.ADAPTERS_DIR, repository_files.ADAPTER_INFO, repository_files.ADAPTER_WEIGHTS)
