"""Fine-tuning: data loading and validation, methods, evaluation, checkpoints."""

from tuneship.trainer.checkpoint import CheckpointInfo, read_checkpoint
from tuneship.trainer.config import TrainConfig
from tuneship.trainer.errors import DataError, TrainingError

__all__ = ["CheckpointInfo", "DataError", "TrainConfig", "TrainingError", "load_classifier", "read_checkpoint",
           "train"]


def load_classifier(path):  # type: ignore[no-untyped-def]
    """Any checkpoint as (torch module with `.logits` output, tokenizer, CheckpointInfo)."""
    from tuneship.trainer.loading import load_classifier as load

    return load(path)


def train(config: TrainConfig):  # type: ignore[no-untyped-def]
    """Run one training job (imports the heavy stack only when called)."""
    from tuneship.trainer.training import train as run

    return run(config)
