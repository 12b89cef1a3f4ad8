"""The task table: every stage's entry resolves, a served model's task is read from its config (or, for a
repository published before every model recorded it, from its contract), and nothing outside the table and the
tasks' own modules decides by comparing task names or sniffing a model's inputs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tuneship.tasks as tasks_module
from tuneship.tasks import (
    TASKS,
    Task,
    UnknownTaskError,
    load,
    resolve_task,
    task,
    task_of_json_config,
    task_of_metadata,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_entry_of_a_row_names_something_that_exists(name: str) -> None:
    row = task(name)
    assert callable(load(row.exporter)) and callable(load(row.client))
    assert load(row.exporter).options_class is load(row.export_options)  # the CLI's options are the export's
    assert callable(load(row.trainer).train)
    for reference in (row.evaluator, row.encoder or None, row.probe_item, row.data_check):
        if reference is not None:
            assert load(reference) is not None
    assert row.layouts[0] == "ensemble" or len(row.layouts) == 1


def test_a_served_models_task_comes_from_its_config_then_its_contract() -> None:
    assert resolve_task({"task": "image-classification"}, ["TEXT"]).name == "image-classification"  # recorded wins
    # Repositories published before classifiers recorded their task still resolve, by their inputs.
    assert resolve_task({}, ["TEXT"]).name == "text-classification"
    assert resolve_task({}, ["IMAGE"]).name == "image-classification"
    assert resolve_task({}, ["text_input", "messages", "stream", "max_tokens"]).name == "instruct"
    assert resolve_task({}, ["input_ids", "attention_mask"]) is None  # a graph step, no task of its own
    with pytest.raises(UnknownTaskError, match="unknown task 'summarise'; tasks: text-classification"):
        resolve_task({"task": "summarise"}, ["TEXT"])
    config = {"parameters": {"task": {"string_value": "instruct"}}, "input": [{"name": "text_input"}]}
    assert task_of_json_config(config).name == "instruct"
    assert task_of_metadata({"inputs": [{"name": "IMAGE"}]}).name == "image-classification"


def test_every_published_caller_model_records_its_task() -> None:
    from tuneship.exporter.image.publishing import image_ensemble_config
    from tuneship.exporter.options import ServingOptions
    from tuneship.exporter.text.model_configs import ensemble_config, single_model_config
    from tuneship.tasks import task_of_config

    options = ServingOptions()
    configs = {"text-classification": [ensemble_config("s", ["input_ids"], ["a", "b"], options),
                                       single_model_config("s", ["a", "b"], 32, "[PAD]", 0, options)],
               "image-classification": [image_ensemble_config("i", ["a", "b"], options)]}
    for name, written in configs.items():
        for config in written:
            assert config.parameters["task"].string_value == name
            assert task_of_config(config).name == name


# The tasks' own modules may name their task and contract; everyone else asks the table.
OWN_MODULES = ("tuneship/tasks.py", "trainer/image/", "trainer/instruct/", "exporter/image/", "exporter/instruct/",
               "exporter/triton_models/", "client/image_classifier.py", "client/images.py", "client/generator.py",
               "client/text_classifier.py", "trainer/config.py", "serving/")
WATCHED = {t.name for t in TASKS.values()} | {name for t in TASKS.values() for name in t.contract.inputs}


# The table's rows by their module-level names (TEXT_GENERATION, ...): comparing with one by identity, equality or
# its name is a task decision too.
ROWS = {name for name, value in vars(tasks_module).items() if isinstance(value, Task)}


def _row(value: ast.expr) -> str | None:
    """The row a comparison side names: `TEXT_GENERATION`, `tasks.TEXT_GENERATION` or `TEXT_GENERATION.name`."""
    if isinstance(value, ast.Attribute) and value.attr == "name":
        value = value.value
    if isinstance(value, ast.Name) and value.id in ROWS:
        return value.id
    if isinstance(value, ast.Attribute) and value.attr in ROWS:
        return value.attr
    return None


def _decisions(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Compare):
            continue
        for side in [node.left, *node.comparators]:
            values = side.elts if isinstance(side, (ast.List, ast.Tuple, ast.Set)) else [side]
            for value in values:
                if isinstance(value, ast.Constant) and value.value in WATCHED:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: compares with {value.value!r}")
                elif (row := _row(value)) is not None:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: compares with the {row} row")
    return found


def test_no_task_decisions_outside_the_table_and_the_tasks_own_modules() -> None:
    decisions = []
    for stage in ("client", "deploy", "monitor", "exporter", "trainer", "tuneship", "api", "tuning", "serving",
                  "search", "datacheck"):
        for path in sorted((ROOT / stage).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if not relative.startswith(OWN_MODULES):
                decisions += _decisions(path)
    assert decisions == [], "ask tuneship.tasks instead:\n" + "\n".join(decisions)


def test_the_check_sees_a_sniffing_decision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    sample = tmp_path / "sniff.py"
    sample.write_text('images = [s["name"] for s in metadata["inputs"]] == ["IMAGE"]\n'
                      'generator = "text_input" in names\nimage = manifest.get("task") != "image-classification"\n'
                      'served = task is TEXT_GENERATION\nnamed = config["task"] == tasks.IMAGE_CLASSIFICATION.name\n'
                      'asked = task.generates or task.classifies\n')
    assert [line.split(": ")[0] for line in _decisions(sample)] == ["sniff.py:1", "sniff.py:2", "sniff.py:3",
                                                                     "sniff.py:4", "sniff.py:5"]
