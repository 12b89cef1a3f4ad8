"""Evaluate any checkpoint on any labelled file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneship.trainer.builtin_data import BUILTIN_DATASETS, load_builtin
from tuneship.trainer.checkpoint import read_checkpoint
from tuneship.trainer.data import load_file
from tuneship.trainer.errors import DataError
from tuneship.trainer.evaluation import classification_metrics, predict_logits
from tuneship.trainer.loading import load_classifier


def evaluate_checkpoint(checkpoint: Path, data: str, text_column: str = "text", label_column: str = "label",
                        encoding: str = "utf-8", batch_size: int = 64, image_column: str = "image") -> dict[str, Any]:
    """Score a classifier checkpoint by its task's evaluator (the task table's)."""
    from tuneship.tasks import load, task

    row = task(str(read_checkpoint(checkpoint).manifest["task"]))
    if row.evaluator is None:
        raise DataError(f"{checkpoint}: tuneship evaluate scores classifiers; this checkpoint is {row.description} "
                        "(its metrics.json holds the evaluation its training ran)")
    metrics: dict[str, Any] = load(row.evaluator)(checkpoint, data, text_column=text_column,
                                                  label_column=label_column, encoding=encoding,
                                                  batch_size=batch_size, image_column=image_column)
    return metrics


def evaluate_texts(checkpoint: Path, data: str, text_column: str = "text", label_column: str = "label",
                   encoding: str = "utf-8", batch_size: int = 64, image_column: str = "image") -> dict[str, Any]:
    dataset = load_builtin(data) if data in BUILTIN_DATASETS else load_file(
        Path(data), text_column, label_column, encoding)
    info = read_checkpoint(checkpoint)
    unknown = sorted(set(dataset.labels) - set(info.labels))
    if unknown:
        raise DataError(f"{data}: labels {unknown} are not labels of {checkpoint} ({', '.join(info.labels)})")
    model, tokenizer, info = load_classifier(checkpoint)
    logits = predict_logits(model, tokenizer, dataset.texts, info.max_length, batch_size)
    index = {label: i for i, label in enumerate(info.labels)}
    return classification_metrics([index[x] for x in dataset.labels], logits.argmax(-1).tolist(), info.labels)


def evaluate_images(checkpoint: Path, data: str, text_column: str = "text", label_column: str = "label",
                    encoding: str = "utf-8", batch_size: int = 64, image_column: str = "image") -> dict[str, Any]:
    from tuneship.trainer.image.data import load_images
    from tuneship.trainer.image.preprocessing import PreprocessSpec
    from tuneship.trainer.image.training import load_image_classifier, predict

    images = load_images(data, image_column, label_column)
    model, manifest = load_image_classifier(checkpoint)
    labels = [str(label) for label in manifest["labels"]]
    unknown = sorted(set(images.labels) - set(labels))
    if unknown:
        raise DataError(f"{data}: labels {unknown} are not labels of {checkpoint} ({', '.join(labels)})")
    logits = predict(model, images.images, PreprocessSpec.from_dict(manifest["preprocessing"]), batch_size)
    index = {label: i for i, label in enumerate(labels)}
    return classification_metrics([index[x] for x in images.labels], logits.argmax(-1).tolist(), labels)
