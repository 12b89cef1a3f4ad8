"""The repository layer: a published pipeline's models and layout resolved once, configs read and written, versions
copied atomically; and nobody else spells a step's model name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tuneship.exporter.options import ServingOptions
from tuneship.exporter.text.model_configs import ensemble_config, onnx_model_config, single_model_config
from tuneship.model_names import STEP_SUFFIXES, step_model
from tuneship.repository import Pipeline, RepositoryError, publish_copy, publish_version, read_config, write_config

ROOT = Path(__file__).resolve().parents[1]


def _ensemble(repository: Path, name: str = "clf") -> None:
    options = ServingOptions()
    write_config(repository, ensemble_config(name, ["input_ids"], ["a", "b"], options))  # creates the folder
    graph = onnx_model_config(step_model(name, "graph"), ["input_ids"], 2, options)
    publish_version(repository, graph, lambda target: (target / "model.onnx").write_bytes(b"v1"))


def test_an_ensemble_pipeline_knows_its_models_and_steps(tmp_path: Path) -> None:
    _ensemble(tmp_path)
    pipeline = Pipeline(tmp_path, "clf")
    assert pipeline.layout == "ensemble" and not pipeline.single_model
    assert pipeline.models == ["clf_tokenizer", "clf_model", "clf_postprocess", "clf"]
    assert pipeline.graph_model == "clf_model" and pipeline.step("tokenizer") == "clf_tokenizer"
    assert pipeline.version_dir("clf_model").name == "1"
    with pytest.raises(RepositoryError, match=r"clf_tokenizer/config.pbtxt does not exist: the published pipeline"):
        pipeline.config("clf_tokenizer")


def test_a_fused_pipeline_is_its_own_every_step(tmp_path: Path) -> None:
    write_config(tmp_path, single_model_config("one", ["a", "b"], 32, "[PAD]", 0, ServingOptions(layout="single")))
    pipeline = Pipeline(tmp_path, "one")
    assert pipeline.layout == "single" and pipeline.models == ["one"]
    assert {pipeline.step(step) for step in STEP_SUFFIXES} == {"one"}


def test_a_missing_or_broken_pipeline_is_named(tmp_path: Path) -> None:
    assert Pipeline(tmp_path, "nothing").layout is None and not Pipeline(tmp_path, "nothing").exists
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.pbtxt").write_text("name: 'bad' platform: [")
    with pytest.raises(RepositoryError, match=r"bad/config.pbtxt: not a valid Triton model config"):
        Pipeline(tmp_path, "bad")
    with pytest.raises(ValueError, match="unknown pipeline step 'decoder'"):
        step_model("clf", "decoder")


def test_a_copied_version_is_the_next_one_with_its_replacements(tmp_path: Path) -> None:
    _ensemble(tmp_path)
    source = Pipeline(tmp_path, "clf").version_dir("clf_model")
    (source / "variants").mkdir()
    (source / "variants" / "int8.onnx").write_bytes(b"kept")
    (tmp_path / "better.onnx").write_bytes(b"v2")
    config = read_config(tmp_path, "clf_model")
    version = publish_copy(source, tmp_path, config, replace={"model.onnx": tmp_path / "better.onnx"}, link=True)
    copied = tmp_path / "clf_model" / str(version)
    assert version == 2 and (copied / "model.onnx").read_bytes() == b"v2"
    assert (source / "model.onnx").read_bytes() == b"v1"  # the source version is untouched
    assert (copied / "variants" / "int8.onnx").stat().st_ino == (source / "variants" / "int8.onnx").stat().st_ino
    assert not [p for p in (tmp_path / "clf_model").iterdir() if p.name.startswith(".staging")]


# The repository layer, the naming convention and the Triton models' own code may spell step names.
SPELLERS = ("tuneship/repository/", "tuneship/model_names.py", "exporter/triton_models/")


def _spellings(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.JoinedStr):
            tail = node.values[-1] if node.values else None
            if isinstance(tail, ast.Constant) and str(tail.value) in STEP_SUFFIXES.values():
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: spells a step model f\"...{tail.value}\"")
    return found


def test_nobody_else_spells_a_step_models_name() -> None:
    spelled = []
    for stage in ("client", "deploy", "monitor", "exporter", "trainer", "tuneship"):
        for path in sorted((ROOT / stage).rglob("*.py")):
            if not path.relative_to(ROOT).as_posix().startswith(SPELLERS):
                spelled += _spellings(path)
    assert spelled == [], "use tuneship.model_names.step_model or tuneship.repository.Pipeline:\n" + "\n".join(spelled)


def test_the_check_sees_a_spelled_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    sample = tmp_path / "spell.py"
    sample.write_text('graph = repository / f"{name}_model"\nok = f"{name} is served"\n')
    assert [line.split(": ")[0] for line in _spellings(sample)] == ["spell.py:1"]


def test_only_the_repository_layer_opens_a_models_config_file() -> None:
    """Every stage reads and writes configs through the repository layer (tuneship.repository)."""
    import ast

    found = []
    for stage in ("client", "deploy", "monitor", "tuning", "trainer", "tuneship", "api", "search", "datacheck"):
        for path in sorted((ROOT / stage).rglob("*.py")):
            if path.relative_to(ROOT).as_posix().startswith("tuneship/repository/"):
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            prose = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}  # docstrings
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and "config.pbtxt" in node.value \
                        and id(node) not in prose:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == [], "use tuneship.repository's read_config / write_config / Snapshot / config_path:\n" + \
        "\n".join(found)
