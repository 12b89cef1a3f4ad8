"""The one table of tasks every stage reads (as transformers' SUPPORTED_TASKS is for its pipelines).

A task is the manifest's and the published config's `task`. Each stage finds its part here (the trainer and
exporter modules, the served contract, the client class, what a liveness probe or `tuneship bench` sends, whether
`tuneship tune` and `tuneship update` take it) instead of comparing task names or sniffing a model's inputs.
Adding a task adds a row and that task's own modules.

Light on purpose: the client imports it, so nothing heavy is imported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tuneship.lazy import load as load  # the table's entries are loaded with it (re-exported)


class UnknownTaskError(ValueError):
    """A task name no row of the table has."""


@dataclass(frozen=True)
class ServedContract:
    """What callers send to, and get from, the model they call (the ensemble, the single model, the generator)."""

    inputs: tuple[str, ...]
    """Inputs every request carries (a served model whose inputs include all of them has this contract)."""
    outputs: tuple[str, ...]
    decoupled: bool = False
    """Answers over gRPC's stream only, one response per piece (Triton's decoupled transaction policy)."""


@dataclass(frozen=True)
class Task:
    name: str
    """The manifest's `task` and the published config's `parameters.task`."""
    description: str
    modality: str
    """What one request item is: "text" or "image" (a file's bytes)."""
    trainer: str
    """Module with `train(config) -> TrainResult`."""
    train_options: str
    """"module:Class" of its training options (a tuneship.trainer.TrainConfig; light: `tuneship train` builds its
    flags from them)."""
    exporter: str
    """"module:Class" of its export: the export run's hooks (tuneship.exporter.run.TaskExport)."""
    export_options: str
    """"module:Class" of its export options (light: `tuneship export` builds its flags from them)."""
    contract: ServedContract
    client: str
    """"module:Class" of the task-level client."""
    probe: str
    """What a liveness probe sends: "items" (one text or image, as a request of the contract) or "generation"
    (one token of a prompt, over the stream)."""
    layouts: tuple[str, ...] = ("ensemble",)
    """Layouts its exporter publishes, the default first."""
    tunable: bool = False
    """`tuneship tune` sweeps its serving settings."""
    updatable: bool = False
    """`tuneship update` retrains it on new labelled data and publishes it through a gate."""
    updater: str | None = None
    """"module:function(options, parent_version, checkpoint, manifest) -> UpdateReport": its `tuneship update`."""
    sized_by: str = "max_length"
    """The manifest field that bounds one input ("max_length" tokens, "image_size" pixels)."""
    evaluator: str | None = None
    """"module:function(checkpoint, data, ...)" scoring a checkpoint on labelled data (`tuneship evaluate`)."""
    encoder: str = ""
    """A classifier's "module:function(items) -> inputs": one request of the served contract from a list of items."""
    item_source: str = "texts"
    """What `tuneship bench` and `tuneship tune` send it: "texts" (--texts FILE or the bundled reviews) or
    "images" (--images FOLDER)."""
    probe_item: str | None = None
    """"module:NAME" of the item a liveness probe sends (None: the probe's text)."""
    search_space: str = ""
    """"module:NAME" of its default search space (a tuneship.space.TaskSpace) for `tuneship search`."""
    data_check: str | None = None
    """"module:function(options) -> CheckReport": `tuneship data check` of its training data (None: not checked)."""

    @property
    def classifies(self) -> bool:
        return self.probe == "items"

    @property
    def generates(self) -> bool:
        """Answers with generated text over the stream (its probe is a generation)."""
        return self.probe == "generation"


TEXT_CLASSIFICATION = Task(
    name="text-classification", description="text classification", modality="text",
    trainer="tuneship.trainer.text.training", train_options="tuneship.trainer.text.config:TextTrainConfig",
    exporter="tuneship.exporter.text.export:TextClassifierExport",
    export_options="tuneship.exporter.text.options:TextExportOptions",
    contract=ServedContract(inputs=("TEXT",), outputs=("LABEL", "PROBABILITIES")),
    client="tuneship.client.text_classifier:TextClassifier", probe="items", layouts=("ensemble", "single"),
    tunable=True, updatable=True, updater="tuneship.monitor.update:update_text_classifier",
    evaluator="tuneship.trainer.text.evaluate:evaluate_texts",
    encoder="tuneship.client.text_classifier:text_request",
    search_space="tuneship.trainer.text.search_space:SPACE", data_check="tuneship.datacheck.check:check_texts")
IMAGE_CLASSIFICATION = Task(
    name="image-classification", description="image classification", modality="image",
    trainer="tuneship.trainer.image.training", train_options="tuneship.trainer.image.config:ImageTrainConfig",
    exporter="tuneship.exporter.image.export:ImageClassifierExport",
    export_options="tuneship.exporter.image.options:ImageExportOptions",
    contract=ServedContract(inputs=("IMAGE",), outputs=("LABEL", "PROBABILITIES")),
    client="tuneship.client.image_classifier:ImageClassifier", probe="items", tunable=True, sized_by="image_size",
    evaluator="tuneship.trainer.image.evaluate:evaluate_images",
    encoder="tuneship.client.image_classifier:image_request", item_source="images",
    probe_item="tuneship.client.images:PROBE_PNG", search_space="tuneship.trainer.image.search_space:SPACE")
TEXT_GENERATION = Task(
    name="instruct", description="text generation (instruction-tuned causal LM)", modality="text",
    trainer="tuneship.trainer.instruct.training",
    train_options="tuneship.trainer.instruct.config:InstructTrainConfig",
    exporter="tuneship.exporter.instruct.export:InstructExport",
    export_options="tuneship.exporter.instruct.options:InstructExportOptions",
    contract=ServedContract(inputs=("text_input", "max_tokens"), outputs=("text_output",), decoupled=True),
    client="tuneship.client.generator:Generator", probe="generation", updatable=True,
    updater="tuneship.monitor.generator_update:update_generator",
    search_space="tuneship.trainer.instruct.search_space:SPACE",
    data_check="tuneship.datacheck.instruct:check_instruct")

TASKS: dict[str, Task] = {task.name: task for task in (TEXT_CLASSIFICATION, IMAGE_CLASSIFICATION, TEXT_GENERATION)}
DEFAULT_TASK = TEXT_CLASSIFICATION.name


def task(name: str) -> Task:
    """The row of `name`; UnknownTaskError listing the tasks otherwise."""
    if name not in TASKS:
        raise UnknownTaskError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}")
    return TASKS[name]


def resolve_task(parameters: Mapping[str, str], input_names: Sequence[str]) -> Task | None:
    """The task of a served model from its config: `parameters.task` where the exporter recorded it, else (a
    repository published before every model recorded its task) the contract its inputs satisfy; None for a model
    of no tuneship task (a tokenizer step, a model of someone else's)."""
    recorded = parameters.get("task")
    if recorded:
        return task(recorded)
    names = set(input_names)
    matches = [t for t in TASKS.values() if set(t.contract.inputs) <= names]
    # The contract with the most required inputs is the most specific match.
    return max(matches, key=lambda t: len(t.contract.inputs)) if matches else None


def task_of_json_config(config: Mapping[str, Any]) -> Task | None:
    """resolve_task on a config as Triton's model-config API returns it (JSON form)."""
    parameters = {key: str(value.get("string_value", "")) for key, value in config.get("parameters", {}).items()}
    return resolve_task(parameters, [str(i["name"]) for i in config.get("input", [])])


def task_of_metadata(metadata: Mapping[str, Any]) -> Task | None:
    """The task a model's metadata (inputs only: no parameters, readable without admin rights) satisfies."""
    return resolve_task({}, [str(i["name"]) for i in metadata.get("inputs", [])])


def task_of_config(config: Any) -> Task | None:
    """resolve_task on a model-config protobuf (`tritonclient.grpc.model_config_pb2.ModelConfig`)."""
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    return resolve_task(parameters, [i.name for i in config.input])
