"""`tuneship train`: validated data -> transformers Trainer -> an atomic, self-describing checkpoint."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneship.trainer.builtin_data import BUILTIN_DATASETS, load_builtin
from tuneship.trainer.callbacks import extra_callbacks
from tuneship.trainer.checkpoint import (
    EVAL_DATA,
    FORMAT_VERSION,
    MANIFEST,
    METRICS,
    data_fingerprint,
    library_versions,
)
from tuneship.trainer.config import resolved_hyperparameters, save_json, validate_config
from tuneship.trainer.distributed import agree, is_main_process, replicas, world_size
from tuneship.trainer.evaluation import format_metrics
from tuneship.trainer.plots import plot_training_curve
from tuneship.trainer.run import (
    TrainResult,
    check_output,
    classifier_metrics,
    precision_flags,
    prepare_work_dir,
    resolved_logging_steps,
    warn,
    work_dir,
    write_checkpoint,
)
from tuneship.trainer.text.base_models import resolve_base_model
from tuneship.trainer.text.config import TextTrainConfig
from tuneship.trainer.text.data import (
    LabelledData,
    check_labels,
    imbalance_report,
    load_file,
    stratified_split,
    write_jsonl,
)
from tuneship.trainer.text.evaluate import predict_logits
from tuneship.trainer.text.methods import method_module


@dataclass
class PreparedData:
    train: LabelledData
    evaluation: LabelledData
    labels: list[str]


def prepare_data(config: TextTrainConfig) -> PreparedData:
    """Load and validate everything before any output is written."""
    if config.data in BUILTIN_DATASETS:
        data = load_builtin(config.data)
    else:
        data = load_file(Path(str(config.data)), config.text_column, config.label_column, config.encoding)
    if config.eval_file:
        train = data
        evaluation = load_file(Path(config.eval_file), config.text_column, config.label_column, config.encoding)
    else:
        train, evaluation = stratified_split(data, config.eval_fraction, config.seed)
    train = train.head(config.max_train_samples, config.seed)
    evaluation = evaluation.head(config.max_eval_samples, config.seed)
    labels = check_labels(train, evaluation)
    return PreparedData(train=train, evaluation=evaluation, labels=labels)


class _EncodedTexts:
    """A map-style dataset of tokenized texts; the collator pads each batch to its longest text."""

    def __init__(self, encodings: dict[str, list[list[int]]], label_ids: list[int]) -> None:
        self.encodings = encodings
        self.label_ids = label_ids

    def __len__(self) -> int:
        return len(self.label_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {key: values[index] for key, values in self.encodings.items()}
        item["labels"] = self.label_ids[index]
        return item


@dataclass
class _Fitted:
    """What a method's fitting step hands to the common saving code."""

    model: Any
    log_history: list[dict[str, Any]]
    seconds: float
    examples_per_second: float
    steps: int
    save: Callable[[Path], dict[str, Any]]
    plot: Callable[[Path], None]
    precision: str
    resolved: dict[str, Any]
    """Values the defaults left open, as this run used them (for the manifest)."""
    distributed: dict[str, Any] | None = None
    """Several processes: how many, and the digest of the weights they all ended with."""


def _fit_with_trainer(config: TextTrainConfig, base: Path, tokenizer: Any, prepared: PreparedData,
                      label_index: dict[str, int], work: Path) -> _Fitted:
    import torch
    from transformers import DataCollatorWithPadding, PrinterCallback, Trainer, TrainingArguments

    from tuneship.trainer.progress import TrainingProgress

    def encode(data: LabelledData) -> _EncodedTexts:
        encodings = tokenizer(data.texts, truncation=True, max_length=config.max_length)
        return _EncodedTexts(dict(encodings), [label_index[label] for label in data.labels])

    train_set, eval_set = encode(prepared.train), encode(prepared.evaluation)
    method = method_module(str(config.method))
    torch.manual_seed(config.seed)
    model = method.build_model(base, prepared.labels, config)

    resume_from = prepare_work_dir(work, config)

    steps_per_epoch = math.ceil(len(train_set) / (config.batch_size * config.gradient_accumulation_steps))
    total_steps = config.max_steps if config.max_steps > 0 else math.ceil(steps_per_epoch * config.epochs)
    strategy = "steps" if config.eval_steps else "epoch"
    precision = precision_flags(config.precision)
    logging_steps = resolved_logging_steps(config, total_steps)
    args = TrainingArguments(
        output_dir=str(work),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.resolved_learning_rate(),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        warmup_steps=int(total_steps * config.warmup_ratio),
        weight_decay=config.weight_decay,
        lr_scheduler_type="linear",
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=config.eval_steps or 500,
        save_steps=config.eval_steps or 500,
        save_total_limit=2,
        logging_steps=logging_steps,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        report_to=[],
        seed=config.seed,
        data_seed=config.seed,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=True,  # TrainingProgress below is the only progress output
        bf16=precision["bf16"],
        fp16=precision["fp16"],
        use_cpu=not torch.cuda.is_available(),  # without it accelerate runs torchrun's ranks apart, unsharded
        # A classifier's loss is a mean over its own batch: transformers' token averaging across ranks would
        # scale it (and its gradient) by the number of processes.
        average_tokens_across_devices=False,
        # Every trained weight of every method takes part in each step: DDP need not search for unused ones.
        ddp_find_unused_parameters=False,
    )

    def compute_metrics(prediction: Any) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return {"accuracy": float((logits.argmax(-1) == prediction.label_ids).mean())}

    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(TrainingProgress())
    for callback in extra_callbacks():
        trainer.add_callback(callback)
    started = time.monotonic()
    output = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.monotonic() - started
    resolved = "bf16" if precision["bf16"] else "fp16" if precision["fp16"] else "fp32"
    trained = trainer.model
    chosen = {"learning_rate": config.resolved_learning_rate(), "logging_steps": logging_steps,
              "eval_steps": config.eval_steps or "epoch", "precision": resolved}
    peft_config = getattr(trained, "peft_config", {}).get("default")
    if peft_config is not None and getattr(peft_config, "target_modules", None):
        chosen["lora_targets"] = ",".join(sorted(peft_config.target_modules))
    return _Fitted(
        model=trained, log_history=list(trainer.state.log_history), seconds=seconds,
        examples_per_second=float(output.metrics.get("train_samples_per_second", 0.0)),
        steps=int(trainer.state.global_step), save=lambda directory: method.save(trained, directory),
        plot=lambda path: plot_training_curve(trainer.state.log_history, path, _curve_title(config, prepared)),
        precision=resolved, resolved=chosen, distributed=replicas(trained),
    )


def _curve_title(config: TextTrainConfig, prepared: PreparedData) -> str:
    return (f"{config.method} fine-tuning of {Path(str(config.model)).name} on {prepared.train.name} "
            f"({len(prepared.train.examples)} texts)")


def _fit_features(config: TextTrainConfig, base: Path, tokenizer: Any, prepared: PreparedData,
                  label_index: dict[str, int]) -> _Fitted:
    from tuneship.trainer.text.methods import features

    fitted = features.fit(base, tokenizer, prepared.labels, prepared.train.texts,
                          [label_index[label] for label in prepared.train.labels], config)
    print(f"{config.classifier}: C={fitted.head.best_c} chosen by 3-fold cross-validation")
    return _Fitted(
        model=fitted.module, log_history=[{"search": fitted.head.search, "best_C": fitted.head.best_c}],
        seconds=fitted.seconds, examples_per_second=fitted.examples_per_second, steps=0,
        save=lambda directory: features.save(fitted.module, directory),
        plot=lambda path: features.plot_search(fitted.head.search, path, config.classifier), precision="fp32",
        resolved={"feature_cache": str(features.cache_directory(config))},
    )


def train(config: TextTrainConfig) -> TrainResult:
    validate_config(config)
    output = Path(config.output)
    check_output(output, config.overwrite)
    prepared = prepare_data(config)
    agree("training and eval data", data_fingerprint(prepared.train.texts + prepared.evaluation.texts,
                                                     prepared.train.labels + prepared.evaluation.labels))
    base = resolve_base_model(str(config.model))
    for note in prepared.train.notes:
        print(f"note: {note}")
    print(imbalance_report(prepared.train))
    print(imbalance_report(prepared.evaluation))

    import transformers
    from transformers import AutoTokenizer

    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    label_index = {label: i for i, label in enumerate(prepared.labels)}
    work = work_dir(output)
    if config.method == "features":
        if not is_main_process():  # a linear head on cached features: rank 0 fits it alone
            return TrainResult(checkpoint=output, metrics={}, train_seconds=0.0)
        if world_size() > 1:
            print("features: rank 0 fits the head alone (the other processes have nothing to share)")
        fitted = _fit_features(config, base, tokenizer, prepared, label_index)
    else:
        fitted = _fit_with_trainer(config, base, tokenizer, prepared, label_index, work)

    if not is_main_process():
        return TrainResult(checkpoint=output, metrics={}, train_seconds=fitted.seconds)
    logits = predict_logits(fitted.model, tokenizer, prepared.evaluation.texts, int(config.max_length or 0),
                            config.eval_batch_size)
    metrics, collapsed = classifier_metrics([label_index[x] for x in prepared.evaluation.labels],
                                            logits.argmax(-1).tolist(), prepared.labels, fitted.seconds,
                                            fitted.examples_per_second, fitted.steps)

    def fill(staging: Path) -> None:
        method_fields = fitted.save(staging)
        tokenizer.save_pretrained(str(staging))
        write_jsonl(staging / EVAL_DATA, prepared.evaluation.texts, prepared.evaluation.labels)
        save_json(staging / METRICS, metrics)
        save_json(staging / "training_log.json", fitted.log_history)
        fitted.plot(staging / "training_curve.png")
        manifest = _manifest(config, base, prepared, metrics, fitted)
        manifest.update(method_fields)
        save_json(staging / MANIFEST, manifest)

    write_checkpoint(output, fill, work)
    print(format_metrics(metrics))
    if collapsed:
        warn(collapsed)
    print(f"checkpoint: {output}  ({config.method}: {fitted.seconds:.0f}s, "
          f"{fitted.examples_per_second:.0f} examples/s; curve: {output / 'training_curve.png'})")
    return TrainResult(checkpoint=output, metrics=metrics, train_seconds=fitted.seconds)


def _manifest(config: TextTrainConfig, base: Path, prepared: PreparedData, metrics: dict[str, Any],
              fitted: _Fitted) -> dict[str, Any]:
    model, precision = fitted.model, fitted.precision
    return {
        "format_version": FORMAT_VERSION,
        "task": "text-classification",
        "base_model": config.model,
        "base_model_path": str(base),
        "model_type": getattr(model.config, "model_type", None),
        "method": config.method,
        "labels": prepared.labels,
        "max_length": config.max_length,
        "hyperparameters": resolved_hyperparameters(config, fitted.resolved),
        "precision": precision,
        "data": {
            "train": prepared.train.name,
            "eval": prepared.evaluation.name,
            "train_examples": len(prepared.train.examples),
            "eval_examples": len(prepared.evaluation.examples),
            "train_label_counts": dict(prepared.train.label_counts()),
            "duplicates_dropped": prepared.train.duplicates_dropped,
            "fingerprint": data_fingerprint(prepared.train.texts, prepared.train.labels),
        },
        "metrics": {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]},
        "versions": library_versions(),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": os.uname().nodename,
    } | ({"distributed": fitted.distributed} if fitted.distributed else {}) \
      | ({"data_check": config.data_check} if config.data_check else {})
