"""Evaluate any classifier checkpoint on any labelled file, by its task's evaluator (text/evaluate.py,
image/evaluate.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneship.trainer.checkpoint import read_checkpoint
from tuneship.trainer.errors import DataError


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
