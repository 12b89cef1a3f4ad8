"""`tuneship train --task image-classification`: an ImageNet CNN as a frozen feature extractor under a linear
classifier (features), or fine-tuned with augmentation (full, lora), into the same atomic, self-describing
checkpoint as the text tasks.

The checkpoint holds the whole classifier (backbone + pooling + linear head, LoRA merged) in
`model.safetensors`, the preprocessing the backbone needs, the held-out images (`eval.jsonl` + `eval_images/`,
for the exporter's validation and gate) and a sample of training images (`calibration_images/`, for static int8).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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
from tuneship.trainer.errors import DataError, TrainingError
from tuneship.trainer.evaluation import format_metrics
from tuneship.trainer.image.backbones import BackboneSpec, backbone_spec, classifier_module, load_pretrained
from tuneship.trainer.image.config import ImageTrainConfig
from tuneship.trainer.image.data import ImageData, imbalance_report, load_images, split
from tuneship.trainer.image.preprocessing import PreprocessSpec, augment, decode, preprocess
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

WEIGHTS = "model.safetensors"
EVAL_IMAGES = "eval_images"
CALIBRATION_IMAGES = "calibration_images"
CALIBRATION_COUNT = 64
MIN_IMAGE_SIZE = 32


@dataclass
class _Fitted:
    model: Any
    log_history: list[dict[str, Any]]
    seconds: float
    images_per_second: float
    steps: int
    precision: str
    resolved: dict[str, Any]
    plot: Any
    trainable: int = 0  # parameters the method trained (LoRA: adapters and head, before merging)
    distributed: dict[str, Any] | None = None  # several processes: how many, and the digest of their weights


def prepare(config: ImageTrainConfig) -> tuple[ImageData, ImageData, list[str]]:
    """Load and check every image before anything is written."""
    data = load_images(str(config.data), config.image_column, config.label_column)
    if config.eval_file:
        train, evaluation = data, load_images(config.eval_file, config.image_column, config.label_column)
    else:
        train, evaluation = split(data, config.eval_fraction, config.seed)
    train = train.head(config.max_train_samples, config.seed)
    evaluation = evaluation.head(config.max_eval_samples, config.seed)
    counts = train.label_counts()
    if len(counts) < 2:
        raise DataError(f"{train.name}: at least two classes are needed, found only {next(iter(counts), 'none')!r}")
    labels = sorted(counts)
    for example in evaluation.examples:
        if example.label not in counts:
            raise DataError(f"{example.source}: label {example.label!r} does not occur in the training images "
                            f"(training labels: {', '.join(labels)})")
    if not evaluation.examples:
        raise DataError(f"{data.name}: no images left for evaluation; lower --eval-fraction or add images")
    return train, evaluation, labels


def pixel_batch(images: Sequence[bytes], spec: PreprocessSpec) -> Any:
    import torch

    return torch.from_numpy(np.stack([preprocess(data, spec) for data in images]))


def predict(model: Any, images: Sequence[bytes], spec: PreprocessSpec, batch_size: int = 64) -> np.ndarray[Any, Any]:
    """Logits of the classifier in eval mode, batch by batch."""
    import torch

    model.eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            outputs.append(model(pixel_batch(images[start:start + batch_size], spec))["logits"].float().numpy())
    return np.concatenate(outputs)


class _Pixels:
    """Training images as pixels: a random crop and flip each time an image is drawn (augment), else the
    evaluation preprocessing."""

    def __init__(self, images: Sequence[bytes], label_ids: list[int], spec: PreprocessSpec, augmented: bool,
                 seed: int) -> None:
        self.images, self.label_ids, self.spec, self.augmented = images, label_ids, spec, augmented
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        import torch

        if self.augmented:
            pixels = augment(decode(self.images[index], least_side=self.spec.resize), self.spec, self.rng)
        else:
            pixels = preprocess(self.images[index], self.spec)
        return {"pixel_values": torch.from_numpy(pixels), "labels": self.label_ids[index]}


def _feature_cache_key(spec: BackboneSpec, preprocessing: PreprocessSpec, data: ImageData) -> str:
    digest = hashlib.sha256(f"{spec.name}:{json.dumps(preprocessing.to_dict(), sort_keys=True)}".encode())
    for example in data.examples:
        digest.update(bytes.fromhex(example.digest))
    return digest.hexdigest()[:32]


def _extract(model: Any, images: Sequence[bytes], preprocessing: PreprocessSpec,
             batch_size: int) -> np.ndarray[Any, Any]:
    import torch
    from tqdm.auto import tqdm

    features = []
    model.eval()
    with torch.inference_mode(), tqdm(total=len(images), desc="extracting features", unit="image") as bar:
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            features.append(model.features(pixel_batch(chunk, preprocessing)).float().numpy())
            bar.update(len(chunk))
    return np.concatenate(features)


def _fit_features(config: ImageTrainConfig, spec: BackboneSpec, preprocessing: PreprocessSpec, train: ImageData,
                  label_ids: list[int], labels: list[str]) -> _Fitted:
    import torch

    from tuneship.trainer.linear_head import cache_directory, fit_linear_head, plot_search

    model = classifier_module(load_pretrained(spec, preprocessing.image_size), spec.feature_dim, len(labels))
    started = time.monotonic()
    cache = cache_directory(config) / f"image-{_feature_cache_key(spec, preprocessing, train)}.npy"
    if cache.is_file():
        features = np.load(cache)
        print(f"features of {len(train.images)} training images read from {cache}")
    else:
        features = _extract(model, train.images, preprocessing, config.eval_batch_size)
        cache.parent.mkdir(parents=True, exist_ok=True)
        temporary = cache.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(temporary, features)
        os.replace(temporary, cache)
    head = fit_linear_head(features, label_ids, len(labels), config.classifier, config.seed)
    print(f"{config.classifier}: C={head.best_c} chosen by 3-fold cross-validation")
    with torch.no_grad():
        model.head.weight.copy_(torch.as_tensor(head.weight))
        model.head.bias.copy_(torch.as_tensor(head.bias))
    seconds = time.monotonic() - started
    return _Fitted(model=model.eval(), log_history=[{"search": head.search, "best_C": head.best_c}], seconds=seconds,
                   images_per_second=len(train.images) / max(seconds, 1e-9), steps=0, precision="fp32",
                   resolved={"feature_cache": str(cache_directory(config))},
                   plot=lambda path: plot_search(head.search, path, config.classifier),
                   trainable=sum(p.numel() for p in model.head.parameters()))


def lora_targets(model: Any) -> list[str]:
    """Every 1x1 convolution that mixes channels (groups 1): most of a mobile CNN's weights, and a shape LoRA
    handles as a matrix; depthwise and stem convolutions stay frozen."""
    import torch

    return [name for name, module in model.named_modules()
            if isinstance(module, torch.nn.Conv2d) and module.kernel_size == (1, 1) and module.groups == 1]


def _fit_with_trainer(config: ImageTrainConfig, spec: BackboneSpec, preprocessing: PreprocessSpec, train: ImageData,
                      evaluation: ImageData, label_index: dict[str, int], labels: list[str], work: Path) -> _Fitted:
    import torch
    from transformers import PrinterCallback, Trainer, TrainingArguments, default_data_collator

    from tuneship.trainer.progress import TrainingProgress

    torch.manual_seed(config.seed)
    model = classifier_module(load_pretrained(spec, preprocessing.image_size), spec.feature_dim, len(labels),
                              dropout=0.2)
    resolved: dict[str, Any] = {"learning_rate": config.resolved_learning_rate()}
    if config.method == "lora":
        from peft import LoraConfig, get_peft_model

        targets = lora_targets(model.backbone)
        lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=[f"backbone.{name}" for name in targets], modules_to_save=["head"])
        model = get_peft_model(model, lora)
        resolved["lora_targets"] = f"{len(targets)} pointwise convolutions"
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    train_set = _Pixels(train.images, [label_index[x] for x in train.labels], preprocessing, config.augment,
                        config.seed)
    eval_set = _Pixels(evaluation.images, [label_index[x] for x in evaluation.labels], preprocessing, False, 0)
    resume_from = prepare_work_dir(work, config)
    steps_per_epoch = math.ceil(len(train_set) / (config.batch_size * config.gradient_accumulation_steps))
    total_steps = config.max_steps if config.max_steps > 0 else math.ceil(steps_per_epoch * config.epochs)
    strategy = "steps" if config.eval_steps else "epoch"
    precision = precision_flags(config.precision)
    logging_steps = resolved_logging_steps(config, total_steps)
    args = TrainingArguments(
        output_dir=str(work), num_train_epochs=config.epochs, max_steps=config.max_steps,
        learning_rate=config.resolved_learning_rate(), per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        warmup_steps=int(total_steps * config.warmup_ratio), weight_decay=config.weight_decay,
        lr_scheduler_type="linear", eval_strategy=strategy, save_strategy=strategy,
        eval_steps=config.eval_steps or 500, save_steps=config.eval_steps or 500, save_total_limit=2,
        logging_steps=logging_steps, report_to=[], seed=config.seed, data_seed=config.seed,
        dataloader_num_workers=0, dataloader_pin_memory=torch.cuda.is_available(), disable_tqdm=True,
        bf16=precision["bf16"], fp16=precision["fp16"], remove_unused_columns=False,
        label_names=["labels"],
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

    trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
                      data_collator=default_data_collator, compute_metrics=compute_metrics)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(TrainingProgress())
    for callback in extra_callbacks():
        trainer.add_callback(callback)
    started = time.monotonic()
    output = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.monotonic() - started
    trained: Any = trainer.model
    distributed = replicas(trained)  # what the ranks trained (with LoRA: adapters and head), compared
    if config.method == "lora":
        trained = trained.merge_and_unload()
    resolved.update({"logging_steps": logging_steps, "eval_steps": config.eval_steps or "epoch",
                     "precision": "bf16" if precision["bf16"] else "fp16" if precision["fp16"] else "fp32"})
    history = list(trainer.state.log_history)
    title = (f"{config.method} fine-tuning of {spec.name} on {train.name} ({len(train.examples)} images, "
             f"{preprocessing.image_size}px)")
    return _Fitted(model=trained.eval(), log_history=history, seconds=seconds,
                   images_per_second=float(output.metrics.get("train_samples_per_second", 0.0)),
                   steps=int(trainer.state.global_step), precision=resolved["precision"], resolved=resolved,
                   plot=lambda path: plot_training_curve(history, path, title), trainable=trainable,
                   distributed=distributed)


def _extension(data: bytes) -> str:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return {"JPEG": ".jpg", "TIFF": ".tif"}.get(str(image.format), f".{str(image.format).lower()}")


def write_images(directory: Path, images: Sequence[bytes], labels: list[str], listing: Path | None) -> None:
    """The images as files (their original bytes) and, if `listing`, a JSONL of relative path + label."""
    directory.mkdir()
    rows = []
    for i, (data, label) in enumerate(zip(images, labels, strict=True)):
        name = f"{i:05d}{_extension(data)}"
        (directory / name).write_bytes(data)
        rows.append(json.dumps({"image": f"{directory.name}/{name}", "label": label}))
    if listing is not None:
        listing.write_text("\n".join(rows) + "\n", encoding="utf-8")


def train(config: ImageTrainConfig) -> TrainResult:
    validate_config(config)
    spec = backbone_spec(str(config.model))
    image_size = config.image_size or spec.image_size
    if image_size < MIN_IMAGE_SIZE:
        raise DataError(f"--image-size {image_size} is too small for an ImageNet backbone (at least "
                        f"{MIN_IMAGE_SIZE})")
    output = Path(config.output)
    check_output(output, config.overwrite)
    train_data, evaluation, labels = prepare(config)
    agree("training and eval images", data_fingerprint([e.digest for e in train_data.examples + evaluation.examples],
                                                       [e.label for e in train_data.examples + evaluation.examples]))
    for note in train_data.notes:
        print(f"note: {note}")
    print(imbalance_report(train_data))
    print(imbalance_report(evaluation))
    preprocessing = PreprocessSpec.for_size(image_size, spec.mean, spec.std)
    label_index = {label: i for i, label in enumerate(labels)}
    work = work_dir(output)
    if config.method == "features":
        if not is_main_process():  # a linear head on cached features: rank 0 fits it alone
            return TrainResult(checkpoint=output, metrics={}, train_seconds=0.0)
        if world_size() > 1:
            print("features: rank 0 fits the head alone (the other processes have nothing to share)")
        fitted = _fit_features(config, spec, preprocessing, train_data,
                               [label_index[x] for x in train_data.labels], labels)
    else:
        fitted = _fit_with_trainer(config, spec, preprocessing, train_data, evaluation, label_index, labels, work)
    if not is_main_process():
        return TrainResult(checkpoint=output, metrics={}, train_seconds=fitted.seconds)

    logits = predict(fitted.model, evaluation.images, preprocessing, config.eval_batch_size)
    metrics, collapsed = classifier_metrics([label_index[x] for x in evaluation.labels], logits.argmax(-1).tolist(),
                                            labels, fitted.seconds, fitted.images_per_second, fitted.steps)

    def fill(staging: Path) -> None:
        from safetensors.torch import save_file

        state = {k: v.detach().contiguous() for k, v in fitted.model.state_dict().items()}
        save_file(state, str(staging / WEIGHTS))
        write_images(staging / EVAL_IMAGES, evaluation.images, evaluation.labels, staging / EVAL_DATA)
        sample = random.Random(config.seed).sample(range(len(train_data.images)),
                                                   min(CALIBRATION_COUNT, len(train_data.images)))
        write_images(staging / CALIBRATION_IMAGES, [train_data.images[i] for i in sample],
                     [train_data.labels[i] for i in sample], None)
        save_json(staging / METRICS, metrics)
        save_json(staging / "training_log.json", fitted.log_history)
        fitted.plot(staging / "training_curve.png")
        manifest = {
            "format_version": FORMAT_VERSION,
            "task": "image-classification",
            "base_model": spec.name,
            "model_type": spec.name,
            "method": config.method,
            "labels": labels,
            "image_size": image_size,
            "feature_dim": spec.feature_dim,
            "preprocessing": preprocessing.to_dict(),
            "weights": WEIGHTS,
            "merged": True,
            "adapter": None,
            "hyperparameters": resolved_hyperparameters(config, fitted.resolved),
            "precision": fitted.precision,
            "data": {"train": train_data.name, "eval": evaluation.name, "train_examples": len(train_data.examples),
                     "eval_examples": len(evaluation.examples),
                     "train_label_counts": dict(train_data.label_counts()),
                     "duplicates_dropped": train_data.duplicates_dropped,
                     "fingerprint": data_fingerprint([e.digest for e in train_data.examples],
                                                     [e.label for e in train_data.examples])},
            "metrics": {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]},
            "trainable_parameters": int(fitted.trainable),
            "total_parameters": int(sum(p.numel() for p in fitted.model.parameters())),
            "versions": library_versions(),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": os.uname().nodename,
        }
        if fitted.distributed:
            manifest["distributed"] = fitted.distributed
        save_json(staging / MANIFEST, manifest)

    write_checkpoint(output, fill, work)
    print(format_metrics(metrics))
    if collapsed:
        warn(collapsed)
    print(f"checkpoint: {output}  ({config.method}: {fitted.seconds:.0f}s, {fitted.images_per_second:.0f} images/s; "
          f"curve: {output / 'training_curve.png'})")
    return TrainResult(checkpoint=output, metrics=metrics, train_seconds=fitted.seconds)


def load_image_classifier(path: Path) -> tuple[Any, dict[str, Any]]:
    """(classifier in eval mode, manifest) of an image checkpoint; TrainingError naming what is wrong."""
    from safetensors.torch import load_file

    from tuneship.trainer.checkpoint import read_checkpoint

    info = read_checkpoint(path)
    manifest = info.manifest
    if manifest.get("task") != "image-classification":
        raise TrainingError(f"{path}: not an image-classification checkpoint (task {manifest.get('task')!r})")
    weights = path / str(manifest.get("weights", WEIGHTS))
    if not weights.is_file():
        raise TrainingError(f"{weights} is missing: the checkpoint's weights are needed")
    spec = backbone_spec(str(manifest["base_model"]))
    model = classifier_module(spec.build(int(manifest["image_size"])), int(manifest["feature_dim"]),
                              len(manifest["labels"]))
    try:
        model.load_state_dict(load_file(str(weights)), strict=True)
    except (RuntimeError, OSError) as error:
        reason = str(error).strip().splitlines()[0]
        raise TrainingError(f"{weights}: cannot load the checkpoint's weights ({reason})") from None
    return model.eval(), manifest
