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
                        encoding: str = "utf-8", batch_size: int = 64) -> dict[str, Any]:
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
