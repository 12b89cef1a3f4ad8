"""The training recipe: one dataclass whose fields give the CLI flags, the recipe file keys and the manifest."""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneship.trainer.errors import DataError

METHODS = ("full", "lora", "ptuning", "prompt-tuning", "prefix-tuning", "features")


@dataclass(frozen=True)
class TaskDefaults:
    """What a task trains with when the recipe leaves it open."""

    methods: tuple[str, ...]
    method: str
    model: str
    max_length: int
    data: str
    # Learning rates that work for each method: adapters and prompts train far fewer weights and want larger
    # steps than full fine-tuning.
    learning_rates: dict[str, float]


TASK_DEFAULTS: dict[str, TaskDefaults] = {
    "text-classification": TaskDefaults(
        methods=METHODS, method="full", model="minilm", max_length=128, data="rotten-tomatoes",
        learning_rates={"full": 5e-5, "lora": 1e-3, "ptuning": 1e-3, "prompt-tuning": 3e-3, "prefix-tuning": 1e-3}),
    "instruct": TaskDefaults(
        methods=("lora", "full", "ptuning"), method="lora", model="smollm2", max_length=256, data="rotten-tomatoes",
        learning_rates={"lora": 5e-4, "full": 5e-5, "ptuning": 3e-3}),
    # max_length is unused by images (their size is --image-size); AdamW steps that fine-tune an ImageNet CNN
    # without wiping out what it learnt.
    "image-classification": TaskDefaults(
        methods=("features", "full", "lora"), method="features", model="mobilenet_v2", max_length=128,
        data="faces", learning_rates={"full": 3e-4, "lora": 2e-3}),
}
TASKS = tuple(TASK_DEFAULTS)
DEFAULT_TASK = "text-classification"
DEFAULT_LEARNING_RATES = TASK_DEFAULTS["text-classification"].learning_rates


def _lora_defaults() -> dict[tuple[str, ...], set[str]]:
    """Model types by their default LoRA targets, for the --lora-targets help."""
    from tuneship.trainer.text.architectures import ARCHITECTURES

    grouped: dict[tuple[str, ...], set[str]] = {}
    for model_type, known in ARCHITECTURES.items():
        grouped.setdefault(known.lora_targets, set()).add(model_type)
    return grouped


TASK_HELP = {"help": "what the checkpoint does: text-classification (labels), instruct (a causal LM that answers "
                     "instructions, served with streaming) or image-classification (labels for images)"}


@dataclass
class TrainConfig:
    """What every task's training run takes. Each task's options extend it in its folder (text/config.py,
    image/config.py, instruct/config.py); given as is to `train`, it becomes its task's options with that task's
    defaults for the rest."""

    task: str = field(default="text-classification", metadata=TASK_HELP)
    data: str | None = field(default=None, metadata={
        "help": "training data: a built-in data set (rotten-tomatoes, the default, and tweets; for instruct also "
                "chatterbot; for images faces, the default, and digits) or a .csv/.tsv/.jsonl/.parquet file "
                "(instruct: .jsonl with 'messages' or 'instruction'/'output'; images: a table of image paths "
                "and labels, or a folder with one subfolder of images per class)"})
    eval_file: str | None = field(default=None, metadata={
        "help": "evaluation file (default: a seeded stratified split of --data is held out)"})
    label_column: str = field(default="label", metadata={"help": "column holding the label"})
    encoding: str = field(default="utf-8", metadata={"help": "text encoding of data files"})
    eval_fraction: float = field(default=0.2, metadata={"help": "share held out for evaluation when no --eval-file"})
    max_train_samples: int | None = field(default=None, metadata={
        "help": "train on a stratified subset (quick runs; default: all)"})
    max_eval_samples: int | None = field(default=None, metadata={
        "help": "evaluate on a stratified subset (default: all)"})
    model: str | None = field(default=None, metadata={
        "help": "base model: a local Hugging Face folder, 'minilm' (the bundled MiniLM-L6 encoder; the default "
                "for text-classification), 'smollm2' (SmolLM2-135M-Instruct; the default for instruct), or for "
                "images an ImageNet backbone: mobilenet_v2 (the default) or efficientnet_lite0"})
    method: str | None = field(default=None, metadata={
        "help": f"fine-tuning method (default: full for text-classification, lora for instruct): {', '.join(METHODS)}"
                " (instruct: lora, full, ptuning)"})
    output: str = field(default="runs/sentiment", metadata={"help": "checkpoint directory to write"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing checkpoint directory"})
    resume: bool = field(default=False, metadata={"help": "continue an interrupted run from its last checkpoint"})
    epochs: float = field(default=2.0, metadata={"help": "training epochs"})
    max_steps: int = field(default=-1, metadata={"help": "stop after this many optimizer steps (-1: use epochs)"})
    learning_rate: float | None = field(default=None, metadata={
        "help": "peak learning rate (AdamW); default per method: full 5e-5, lora 1e-3, ptuning 1e-3, "
                "prompt-tuning 3e-3, prefix-tuning 1e-3 (instruct: lora 5e-4, full 5e-5, ptuning 3e-3)"})
    batch_size: int = field(default=32, metadata={"help": "training batch size per device"})
    eval_batch_size: int = field(default=64, metadata={"help": "evaluation batch size"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "batches per optimizer step"})
    warmup_ratio: float = field(default=0.1, metadata={"help": "share of steps spent warming up the learning rate"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    logging_steps: int | None = field(default=None, metadata={
        "help": "log the loss every N steps (default: every 20 steps, or more often so a short run has ~50 points)"})
    eval_steps: int | None = field(default=None, metadata={
        "help": "evaluate and save every N steps (default: per epoch)"})
    seed: int = field(default=42, metadata={"help": "random seed (data split, initialisation, order)"})
    lora_rank: int = field(default=8, metadata={"help": "lora: rank of the update matrices"})
    lora_alpha: int = field(default=16, metadata={"help": "lora: scaling (alpha / rank multiplies the update)"})
    lora_dropout: float = field(default=0.1, metadata={"help": "lora: dropout on the adapter input"})
    precision: str = field(default="auto", metadata={
        "help": "auto (bf16 on GPUs that have it, and for instruct on CPUs with AVX512-BF16 or AMX; else fp32), "
                "fp32, bf16 or fp16"})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def task_name(cls) -> str:
        """The task these options are for (the default of their `task`)."""
        return str(next(f.default for f in dataclasses.fields(cls) if f.name == "task"))

    def resolved_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return TASK_DEFAULTS[self.task].learning_rates.get(str(self.method), 5e-5)


@dataclass
class TokenOptions:
    """What the tasks that train on tokens (text classification, instruct) share."""

    max_length: int | None = field(default=None, metadata={
        "help": "maximum tokens per text or conversation, longer ones truncated (default: 128 for "
                "text-classification, 256 for instruct)"})
    lora_targets: str | None = field(default=None, metadata={
        "help": "lora: comma-separated module names to adapt (default: per architecture: "
                + "; ".join(f"{','.join(names)} for {', '.join(sorted(types))}"
                            for names, types in _lora_defaults().items()) + ")"})
    num_virtual_tokens: int = field(default=20, metadata={
        "help": "ptuning / prompt-tuning / prefix-tuning: number of virtual tokens"})
    prompt_encoder_hidden_size: int = field(default=128, metadata={"help": "ptuning: prompt encoder MLP width"})


@dataclass
class LinearHeadOptions:
    """The `features` method's options (a linear head on frozen features: text and image classifiers)."""

    classifier: str = field(default="logreg", metadata={
        "help": "features: scikit-learn classifier on frozen features: logreg or svm (linear)"})
    feature_cache: str | None = field(default=None, metadata={
        "help": "features: cache directory for extracted features (default: ~/.cache/tuneship/features)"})


# Which options a method actually uses; the manifest keeps those only, with their defaults resolved.
_COMMON = ("task", "data", "eval_file", "text_column", "label_column", "encoding", "eval_fraction",
           "max_train_samples", "max_eval_samples", "model", "method", "max_length", "eval_batch_size", "seed")
_GRADIENT = ("epochs", "max_steps", "learning_rate", "batch_size", "gradient_accumulation_steps", "warmup_ratio",
             "weight_decay", "group_by_length", "logging_steps", "eval_steps", "precision")
_LORA = ("lora_rank", "lora_alpha", "lora_dropout", "lora_targets")
METHOD_OPTIONS: dict[str, tuple[str, ...]] = {
    "full": _COMMON + _GRADIENT,
    "lora": _COMMON + _GRADIENT + _LORA,
    "ptuning": (*_COMMON, *_GRADIENT, "num_virtual_tokens", "prompt_encoder_hidden_size"),
    "prompt-tuning": (*_COMMON, *_GRADIENT, "num_virtual_tokens"),
    "prefix-tuning": (*_COMMON, *_GRADIENT, "num_virtual_tokens"),
    "features": (*_COMMON, "classifier", "pooling", "feature_cache"),
}
_INSTRUCT_COMMON = (*(name for name in _COMMON if name not in ("text_column", "label_column")),
                    "system_prompt", "max_new_tokens", "exact_match_samples")
_INSTRUCT_GRADIENT = tuple(name for name in _GRADIENT if name != "group_by_length")
INSTRUCT_METHOD_OPTIONS: dict[str, tuple[str, ...]] = {
    "full": _INSTRUCT_COMMON + _INSTRUCT_GRADIENT,
    "lora": _INSTRUCT_COMMON + _INSTRUCT_GRADIENT + _LORA,
    "ptuning": (*_INSTRUCT_COMMON, *_INSTRUCT_GRADIENT, "num_virtual_tokens", "prompt_encoder_hidden_size"),
}
_IMAGE_COMMON = (*(name for name in _COMMON if name not in ("text_column", "max_length")), "image_column",
                 "image_size")
_IMAGE_GRADIENT = (*(name for name in _GRADIENT if name != "group_by_length"), "augment")
IMAGE_METHOD_OPTIONS: dict[str, tuple[str, ...]] = {
    "features": (*_IMAGE_COMMON, "classifier", "feature_cache"),
    "full": _IMAGE_COMMON + _IMAGE_GRADIENT,
    "lora": _IMAGE_COMMON + _IMAGE_GRADIENT + ("lora_rank", "lora_alpha", "lora_dropout"),
}
TASK_METHOD_OPTIONS = {"text-classification": METHOD_OPTIONS, "instruct": INSTRUCT_METHOD_OPTIONS,
                       "image-classification": IMAGE_METHOD_OPTIONS}


def resolved_hyperparameters(config: TrainConfig, resolved: dict[str, Any]) -> dict[str, Any]:
    """The options the method used, each with the value it had: `resolved` fills what defaults left open
    (learning rate, LoRA targets, logging interval...); options left unset that mean "none" are omitted."""
    config = as_task_config(config)
    table = TASK_METHOD_OPTIONS[config.task]
    values = {name: getattr(config, name) for name in table[str(config.method)] if hasattr(config, name)}
    values.update({k: v for k, v in resolved.items() if k in values})
    return {name: value for name, value in values.items() if value is not None}


def config_class(task: str) -> type[TrainConfig]:
    """The training options class of `task` (the task table's), or DataError listing the tasks."""
    from tuneship.tasks import UnknownTaskError, load
    from tuneship.tasks import task as task_row

    try:
        options: type[TrainConfig] = load(task_row(task).train_options)
    except UnknownTaskError:
        raise DataError(f"unknown --task {task!r}; choose one of: {', '.join(TASKS)}") from None
    return options


def task_configs() -> list[type[TrainConfig]]:
    return [config_class(task) for task in TASKS]


INTERNAL_FIELDS = {"data_check"}
"""Options tuneship sets itself (no flag, no recipe key)."""


def field_names(options: type[Any]) -> set[str]:
    return {f.name for f in dataclasses.fields(options)}


def as_task_config(config: TrainConfig) -> TrainConfig:
    """`config` as its task's options class: the common TrainConfig takes the task's defaults for the rest;
    another task's options class is refused, naming both."""
    wanted = config_class(config.task)
    if isinstance(config, wanted):
        return config
    if type(config) is TrainConfig:
        return wanted(**config.to_dict())
    raise DataError(f"--task {config.task} is trained with {wanted.__name__}, not {type(config).__name__}")


def check_task_options(task: str, given: dict[str, Any], where: str) -> None:
    """Refuse options another task's training takes (rather than ignore them), naming them and their task."""
    own = field_names(config_class(task))
    foreign = sorted(set(given) - own)
    if not foreign:
        return
    owners = {name: [t for t in TASKS if name in field_names(config_class(t))] for name in foreign}
    raise DataError(f"{where}: " + "; ".join(f"--{name.replace('_', '-')} is an option of "
                                             f"{' and '.join(owners[name])} training" for name in foreign)
                    + f", not of --task {task} (leave it out)")


def config_from_hyperparameters(values: dict[str, Any], **overrides: Any) -> TrainConfig:
    """The task's TrainConfig that repeats a checkpoint's recipe (its manifest's `hyperparameters`), with overrides.

    The manifest shows resolved values for people ("epoch" evaluation, LoRA targets as a list, the logging
    interval picked for that run's length); those go back to the options that produce them."""
    options = config_class(str(overrides.get("task", values.get("task", DEFAULT_TASK))))
    fields = field_names(options)
    recipe = {k: v for k, v in values.items() if k in fields}
    if recipe.get("eval_steps") == "epoch":
        recipe["eval_steps"] = None
    if isinstance(recipe.get("lora_targets"), list):
        recipe["lora_targets"] = ",".join(recipe["lora_targets"])
    if recipe.get("lora_targets") == "all-linear":  # what the default (None) was shown as
        recipe["lora_targets"] = None
    recipe.pop("logging_steps", None)  # picked for the original run's length
    return options(**{**recipe, **overrides})


def _parse_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {value!r}")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per field of every task's options (the common ones first, then each task's in a group);
    defaults are suppressed so that only given flags override a recipe."""
    parser.add_argument("--recipe", type=Path, default=None, help="YAML or TOML recipe file (flags override it)")
    seen: set[str] = set()
    groups: list[tuple[Any, type[Any]]] = [
        (parser, TrainConfig),
        (parser.add_argument_group("texts and conversations (text-classification and instruct)"), TokenOptions),
        (parser.add_argument_group("the features method (text- and image-classification)"), LinearHeadOptions)]
    groups += [(parser.add_argument_group(f"{options.task_name()} training"), options) for options in task_configs()]
    for target, options in groups:
        for f in dataclasses.fields(options):
            if f.name in seen:
                continue
            seen.add(f.name)
            _add_flag(target, f)


def train_flags(parser: Any, names: tuple[str, ...]) -> None:
    """`tuneship train`'s flags for the options `names` (a command that takes some of them as train does)."""
    seen: set[str] = set()
    for options in (TrainConfig, TokenOptions, LinearHeadOptions, *task_configs()):
        for f in dataclasses.fields(options):
            if f.name in names and f.name not in seen:
                seen.add(f.name)
                _add_flag(parser, f)


def train_values(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    """The options of `names` a command declared with `train_flags` was given (the others keep train's defaults)."""
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


def _add_flag(parser: Any, f: dataclasses.Field[Any]) -> None:
    if "flag" in f.metadata and f.metadata["flag"] is None:  # set by tuneship itself, never given
        return
    flag = "--" + f.name.replace("_", "-")
    help_text = str(f.metadata.get("help", ""))
    if "default" not in help_text and f.default is not None:
        help_text += f" (default: {f.default})"
    if f.type in ("bool",):
        parser.add_argument(flag, nargs="?", const=True, type=_parse_bool, default=argparse.SUPPRESS,
                            help=help_text)
        return
    kind = {"int": int, "float": float, "int | None": int, "str | None": str,
            "float | None": float}.get(str(f.type), str)
    parser.add_argument(flag, type=kind, default=argparse.SUPPRESS, help=help_text)


def load_recipe(path: Path) -> dict[str, Any]:
    from tuneship.mapping_files import MappingFileError, read_mapping

    try:
        raw = read_mapping(path, "recipe")
    except MappingFileError as error:
        raise DataError(str(error)) from None
    known = set().union(*(field_names(options) for options in task_configs())) - INTERNAL_FIELDS
    recipe: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise DataError(f"{path}: unknown option {key!r} (options: {', '.join(sorted(known))})")
        recipe[name] = value
    return recipe


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values: dict[str, Any] = {}
    if getattr(args, "recipe", None) is not None:
        values.update(load_recipe(args.recipe))
    recipe = dict(values)
    for options in task_configs():
        for f in dataclasses.fields(options):
            if hasattr(args, f.name):
                values[f.name] = getattr(args, f.name)
    task = str(values.get("task", DEFAULT_TASK))
    options = config_class(task)
    if getattr(args, "recipe", None) is not None:
        check_task_options(task, recipe, str(args.recipe))
    check_task_options(task, values, "tuneship train")
    config = options(**values)
    validate_config(config)
    return config


def validate_config(config: TrainConfig) -> None:
    """Check the recipe and fill what the task decides (method, base model, max length) where it was left open."""
    if config.task not in TASK_DEFAULTS:
        raise DataError(f"unknown --task {config.task!r}; choose one of: {', '.join(TASKS)}")
    defaults = TASK_DEFAULTS[config.task]
    config.method = config.method or defaults.method
    config.model = config.model or defaults.model
    if hasattr(config, "max_length"):  # the tasks that train on tokens
        config.max_length = config.max_length or defaults.max_length
    config.data = config.data or defaults.data
    if config.method not in defaults.methods:
        raise DataError(f"unknown --method {config.method!r} for --task {config.task}; choose one of: "
                        f"{', '.join(defaults.methods)}")
    if config.precision not in ("auto", "fp32", "bf16", "fp16"):
        raise DataError(f"unknown --precision {config.precision!r}; choose auto, fp32, bf16 or fp16")
    classifier, pooling = getattr(config, "classifier", "logreg"), getattr(config, "pooling", "mean")
    if classifier not in ("logreg", "svm"):
        raise DataError(f"unknown --classifier {classifier!r}; choose logreg or svm")
    if pooling not in ("mean", "cls"):
        raise DataError(f"unknown --pooling {pooling!r}; choose mean or cls")
    for name in ("batch_size", "eval_batch_size", "max_length", "gradient_accumulation_steps", "lora_rank",
                 "num_virtual_tokens", "max_new_tokens", "image_size"):
        if getattr(config, name, None) is not None and getattr(config, name) <= 0:
            raise DataError(f"--{name.replace('_', '-')} must be positive, got {getattr(config, name)}")


def save_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
