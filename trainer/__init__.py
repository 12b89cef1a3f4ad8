"""Fine-tuning: data loading and validation, methods, evaluation, checkpoints."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneship.lazy import lazy_names
from tuneship.trainer.checkpoint import CheckpointInfo, read_checkpoint
from tuneship.trainer.config import TrainConfig
from tuneship.trainer.errors import DataError, TrainingError

if TYPE_CHECKING:
    from tuneship.trainer.run import TrainResult

__all__ = ["CheckpointInfo", "DataError", "TrainConfig", "TrainingError", "load_classifier", "read_checkpoint",
           "train"]


def load_classifier(path: str | os.PathLike[str]) -> tuple[Any, Any, CheckpointInfo]:
    """Load any checkpoint `tuneship train` wrote, whatever its method, as one classifier.

    Returns `(model, tokenizer, info)`: a torch module in eval mode whose output has `.logits` of shape
    [batch, labels] (LoRA merged, prompts attached, a features head wrapped around its encoder), the
    checkpoint's Hugging Face tokenizer, and its manifest as a CheckpointInfo (labels in class-id order).
    Raises TrainingError naming the checkpoint when it is missing or broken.
    """
    from tuneship.trainer.text.loading import load_classifier as load

    return load(Path(path))


def train(config: TrainConfig) -> TrainResult:
    """Run one training job, by the module of its task (imports the heavy stack only when called)."""
    from tuneship.trainer import distributed
    from tuneship.trainer.config import as_task_config, validate_config
    from tuneship.trainer.tasks import task_trainer

    config = as_task_config(config)
    validate_config(config)
    from tuneship.trainer.run import library_bars_only_on_a_terminal

    with distributed.session(), library_bars_only_on_a_terminal():  # under a launcher: one group, one voice
        result: TrainResult = task_trainer(config.task).train(config)
    return result

# What other stages use of this one, loaded on first use (tuneship.lazy); mypy reads the imports below.
_LAZY_NAMES = {
    "ARCHITECTURES": "tuneship.trainer.text.architectures",
    "ImageTrainConfig": "tuneship.trainer.image.config",
    "InstructTrainConfig": "tuneship.trainer.instruct.config",
    "TextTrainConfig": "tuneship.trainer.text.config",
    "BUILTIN_DATASETS": "tuneship.trainer.builtin_data",
    "CALIBRATION_IMAGES": "tuneship.trainer.image.training",
    "PreprocessSpec": "tuneship.trainer.image.preprocessing",
    "architecture": "tuneship.trainer.text.architectures",
    "config_from_hyperparameters": "tuneship.trainer.config",
    "data_fingerprint": "tuneship.trainer.checkpoint",
    "load_builtin": "tuneship.trainer.builtin_data",
    "load_file": "tuneship.trainer.text.data",
    "load_image_classifier": "tuneship.trainer.image.training",
    "normalise": "tuneship.trainer.instruct.evaluation",
    "prepare_data": "tuneship.trainer.text.training",
    "preprocess": "tuneship.trainer.image.preprocessing",
    "prompt_ids": "tuneship.trainer.instruct.evaluation",
    "jsonl_records": "tuneship.trainer.tables",
    "load_instructions": "tuneship.trainer.instruct.data",
    "prepare_instructions": "tuneship.trainer.instruct.data",
    "split_instructions": "tuneship.trainer.instruct.data",
    "write_conversations": "tuneship.trainer.instruct.data",
    "read_rows": "tuneship.trainer.tables",
    "read_conversations": "tuneship.trainer.instruct.data",
    "save_json": "tuneship.trainer.config",
    "stratified_split": "tuneship.trainer.text.data",
    "write_jsonl": "tuneship.trainer.text.data",
}
_LAZY_MODULES = {
    "preprocessing": "tuneship.trainer.image.preprocessing",
}
__getattr__ = lazy_names(__name__, _LAZY_NAMES, _LAZY_MODULES)
__all__ += sorted([*_LAZY_NAMES, *_LAZY_MODULES])

if TYPE_CHECKING:
    from tuneship.trainer.builtin_data import BUILTIN_DATASETS as BUILTIN_DATASETS
    from tuneship.trainer.builtin_data import load_builtin as load_builtin
    from tuneship.trainer.checkpoint import data_fingerprint as data_fingerprint
    from tuneship.trainer.config import (
        config_from_hyperparameters as config_from_hyperparameters,
    )
    from tuneship.trainer.config import (
        save_json as save_json,
    )
    from tuneship.trainer.image import preprocessing as preprocessing
    from tuneship.trainer.image.config import ImageTrainConfig as ImageTrainConfig
    from tuneship.trainer.image.preprocessing import PreprocessSpec as PreprocessSpec
    from tuneship.trainer.image.preprocessing import preprocess as preprocess
    from tuneship.trainer.image.training import (
        CALIBRATION_IMAGES as CALIBRATION_IMAGES,
    )
    from tuneship.trainer.image.training import (
        load_image_classifier as load_image_classifier,
    )
    from tuneship.trainer.instruct.config import InstructTrainConfig as InstructTrainConfig
    from tuneship.trainer.instruct.data import load_instructions as load_instructions
    from tuneship.trainer.instruct.data import prepare_instructions as prepare_instructions
    from tuneship.trainer.instruct.data import read_conversations as read_conversations
    from tuneship.trainer.instruct.data import split_instructions as split_instructions
    from tuneship.trainer.instruct.data import write_conversations as write_conversations
    from tuneship.trainer.instruct.evaluation import normalise as normalise
    from tuneship.trainer.instruct.evaluation import prompt_ids as prompt_ids
    from tuneship.trainer.tables import jsonl_records as jsonl_records
    from tuneship.trainer.tables import read_rows as read_rows
    from tuneship.trainer.text.architectures import ARCHITECTURES as ARCHITECTURES
    from tuneship.trainer.text.architectures import architecture as architecture
    from tuneship.trainer.text.config import TextTrainConfig as TextTrainConfig
    from tuneship.trainer.text.data import (
        load_file as load_file,
    )
    from tuneship.trainer.text.data import (
        stratified_split as stratified_split,
    )
    from tuneship.trainer.text.data import (
        write_jsonl as write_jsonl,
    )
    from tuneship.trainer.text.training import prepare_data as prepare_data
