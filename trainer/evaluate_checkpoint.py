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
    if read_checkpoint(checkpoint).manifest.get("task") == "image-classification":
        return _evaluate_images(checkpoint, data, image_column, label_column, batch_size)
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


def _evaluate_images(checkpoint: Path, data: str, image_column: str, label_column: str,
                     batch_size: int) -> dict[str, Any]:
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
