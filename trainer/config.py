"""The training recipe: one dataclass whose fields give the CLI flags, the recipe file keys and the manifest."""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

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
DEFAULT_LEARNING_RATES = TASK_DEFAULTS["text-classification"].learning_rates


def _lora_defaults() -> dict[tuple[str, ...], set[str]]:
    """Model types by their default LoRA targets, for the --lora-targets help."""
    from tuneship.trainer.text.architectures import ARCHITECTURES

    grouped: dict[tuple[str, ...], set[str]] = {}
    for model_type, known in ARCHITECTURES.items():
        grouped.setdefault(known.lora_targets, set()).add(model_type)
    return grouped


@dataclass
class TrainConfig:
    task: str = field(default="text-classification", metadata={
        "help": "what the checkpoint does: text-classification (labels), instruct (a causal LM that answers "
                "instructions, served with streaming) or image-classification (labels for images)"})
    data: str | None = field(default=None, metadata={
        "help": "training data: a built-in data set (rotten-tomatoes, the default, and tweets; for instruct also "
                "chatterbot; for images faces, the default, and digits) or a .csv/.tsv/.jsonl/.parquet file "
                "(instruct: .jsonl with 'messages' or 'instruction'/'output'; images: a table of image paths "
                "and labels, or a folder with one subfolder of images per class)"})
    eval_file: str | None = field(default=None, metadata={
        "help": "evaluation file (default: a seeded stratified split of --data is held out)"})
    text_column: str = field(default="text", metadata={"help": "column holding the text"})
    image_column: str = field(default="image", metadata={
        "help": "images: column holding the image path (relative paths are relative to the table)"})
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
    max_length: int | None = field(default=None, metadata={
        "help": "maximum tokens per text or conversation, longer ones truncated (default: 128 for "
                "text-classification, 256 for instruct)"})
    warmup_ratio: float = field(default=0.1, metadata={"help": "share of steps spent warming up the learning rate"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    group_by_length: bool = field(default=True, metadata={
        "help": "batch texts of similar length together (less padding, faster on CPU)"})
    logging_steps: int | None = field(default=None, metadata={
        "help": "log the loss every N steps (default: every 20 steps, or more often so a short run has ~50 points)"})
    eval_steps: int | None = field(default=None, metadata={
        "help": "evaluate and save every N steps (default: per epoch)"})
    seed: int = field(default=42, metadata={"help": "random seed (data split, initialisation, order)"})
    lora_rank: int = field(default=8, metadata={"help": "lora: rank of the update matrices"})
    lora_alpha: int = field(default=16, metadata={"help": "lora: scaling (alpha / rank multiplies the update)"})
    lora_dropout: float = field(default=0.1, metadata={"help": "lora: dropout on the adapter input"})
    lora_targets: str | None = field(default=None, metadata={
        "help": "lora: comma-separated module names to adapt (default: per architecture: "
                + "; ".join(f"{','.join(names)} for {', '.join(sorted(types))}"
                            for names, types in _lora_defaults().items()) + ")"})
    num_virtual_tokens: int = field(default=20, metadata={
        "help": "ptuning / prompt-tuning / prefix-tuning: number of virtual tokens"})
    prompt_encoder_hidden_size: int = field(default=128, metadata={"help": "ptuning: prompt encoder MLP width"})
    classifier: str = field(default="logreg", metadata={
        "help": "features: scikit-learn classifier on frozen features: logreg or svm (linear)"})
    pooling: str = field(default="mean", metadata={"help": "features: how token vectors become one: mean or cls"})
    feature_cache: str | None = field(default=None, metadata={
        "help": "features: cache directory for extracted features (default: ~/.cache/tuneship/features)"})
    image_size: int | None = field(default=None, metadata={
        "help": "images: side of the square the backbone sees (default: the backbone's, 224); smaller is faster"})
    augment: bool = field(default=True, metadata={
        "help": "images, full and lora: random crops and horizontal flips of the training images"})
    precision: str = field(default="auto", metadata={
        "help": "auto (bf16 on GPUs that have it, and for instruct on CPUs with AVX512-BF16 or AMX; else fp32), "
                "fp32, bf16 or fp16"})
    system_prompt: str | None = field(default=None, metadata={
        "help": "instruct: a system message put before every conversation that has none (the assistant's tone)"})
    max_new_tokens: int = field(default=8, metadata={
        "help": "instruct: tokens generated per held-out prompt when measuring exact-match accuracy"})
    exact_match_samples: int = field(default=200, metadata={
        "help": "instruct: held-out prompts answered greedily before and after fine-tuning (0: skip)"})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resolved_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return TASK_DEFAULTS[self.task].learning_rates.get(str(self.method), 5e-5)


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
    table = TASK_METHOD_OPTIONS[config.task]
    values = {name: getattr(config, name) for name in table[str(config.method)]}
    values.update({k: v for k, v in resolved.items() if k in values})
    return {name: value for name, value in values.items() if value is not None}


def config_from_hyperparameters(values: dict[str, Any], **overrides: Any) -> TrainConfig:
    """A TrainConfig that repeats a checkpoint's recipe (its manifest's `hyperparameters`), with overrides.

    The manifest shows resolved values for people ("epoch" evaluation, LoRA targets as a list, the logging
    interval picked for that run's length); those go back to the options that produce them."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    recipe = {k: v for k, v in values.items() if k in fields}
    if recipe.get("eval_steps") == "epoch":
        recipe["eval_steps"] = None
    if isinstance(recipe.get("lora_targets"), list):
        recipe["lora_targets"] = ",".join(recipe["lora_targets"])
    recipe.pop("logging_steps", None)  # picked for the original run's length
    return TrainConfig(**{**recipe, **overrides})


def _parse_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {value!r}")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; defaults are suppressed so that only given flags override a recipe."""
    parser.add_argument("--recipe", type=Path, default=None, help="YAML or TOML recipe file (flags override it)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        help_text = str(f.metadata.get("help", ""))
        if "default" not in help_text and f.default is not None:
            help_text += f" (default: {f.default})"
        if f.type in ("bool",):
            parser.add_argument(flag, nargs="?", const=True, type=_parse_bool, default=argparse.SUPPRESS,
                                help=help_text)
            continue
        kind = {"int": int, "float": float, "int | None": int, "str | None": str,
                "float | None": float}.get(str(f.type), str)
        parser.add_argument(flag, type=kind, default=argparse.SUPPRESS, help=help_text)


def load_recipe(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path}: recipe file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            raw: Any = tomllib.loads(text)
        else:
            import yaml

            raw = yaml.safe_load(text) or {}
    except Exception as error:  # the parsers' own messages carry line numbers
        raise DataError(f"{path}: cannot parse recipe: {error}") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: a recipe must be a mapping of option names to values")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
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
    for f in dataclasses.fields(TrainConfig):
        if hasattr(args, f.name):
            values[f.name] = getattr(args, f.name)
    config = TrainConfig(**values)
    validate_config(config)
    return config


def validate_config(config: TrainConfig) -> None:
    """Check the recipe and fill what the task decides (method, base model, max length) where it was left open."""
    if config.task not in TASK_DEFAULTS:
        raise DataError(f"unknown --task {config.task!r}; choose one of: {', '.join(TASKS)}")
    defaults = TASK_DEFAULTS[config.task]
    config.method = config.method or defaults.method
    config.model = config.model or defaults.model
    config.max_length = config.max_length or defaults.max_length
    config.data = config.data or defaults.data
    if config.method not in defaults.methods:
        raise DataError(f"unknown --method {config.method!r} for --task {config.task}; choose one of: "
                        f"{', '.join(defaults.methods)}")
    if config.precision not in ("auto", "fp32", "bf16", "fp16"):
        raise DataError(f"unknown --precision {config.precision!r}; choose auto, fp32, bf16 or fp16")
    if config.classifier not in ("logreg", "svm"):
        raise DataError(f"unknown --classifier {config.classifier!r}; choose logreg or svm")
    if config.pooling not in ("mean", "cls"):
        raise DataError(f"unknown --pooling {config.pooling!r}; choose mean or cls")
    for name in ("batch_size", "eval_batch_size", "max_length", "gradient_accumulation_steps", "lora_rank",
                 "num_virtual_tokens", "max_new_tokens", "image_size"):
        if getattr(config, name) is not None and getattr(config, name) <= 0:
            raise DataError(f"--{name.replace('_', '-')} must be positive, got {getattr(config, name)}")


def save_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
