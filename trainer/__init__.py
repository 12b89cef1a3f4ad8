"""Fine-tuning: data loading and validation, methods, evaluation, checkpoints."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneship.trainer.checkpoint import CheckpointInfo, read_checkpoint
from tuneship.trainer.config import TrainConfig
from tuneship.trainer.errors import DataError, TrainingError

if TYPE_CHECKING:
    from tuneship.trainer.training import TrainResult

__all__ = ["CheckpointInfo", "DataError", "TrainConfig", "TrainingError", "load_classifier", "read_checkpoint",
           "train"]


def load_classifier(path: str | os.PathLike[str]) -> tuple[Any, Any, CheckpointInfo]:
    """Load any checkpoint `tuneship train` wrote, whatever its method, as one classifier.

    Returns `(model, tokenizer, info)`: a torch module in eval mode whose output has `.logits` of shape
    [batch, labels] (LoRA merged, prompts attached, a features head wrapped around its encoder), the
    checkpoint's Hugging Face tokenizer, and its manifest as a CheckpointInfo (labels in class-id order).
    Raises TrainingError naming the checkpoint when it is missing or broken.
    """
    from tuneship.trainer.loading import load_classifier as load

    return load(Path(path))


def train(config: TrainConfig) -> TrainResult:
    """Run one training job, by the module of its task (imports the heavy stack only when called)."""
    from tuneship.trainer.config import validate_config
    from tuneship.trainer.tasks import task_trainer

    validate_config(config)
    result: TrainResult = task_trainer(config.task).train(config)
    return result
