"""A text classifier's training options (the encoder methods', the features head's and the tokens')."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tuneship.trainer.config import TASK_HELP, LinearHeadOptions, TokenOptions, TrainConfig


@dataclass
class TextTrainConfig(TokenOptions, LinearHeadOptions, TrainConfig):
    task: str = field(default="text-classification", metadata=TASK_HELP)
    text_column: str = field(default="text", metadata={"help": "column holding the text"})
    group_by_length: bool = field(default=True, metadata={
        "help": "batch texts of similar length together (less padding, faster on CPU)"})
    pooling: str = field(default="mean", metadata={"help": "features: how token vectors become one: mean or cls"})
    clean: bool = field(default=False, metadata={
        "help": "check the data first (tuneship data check, with the base model as its encoder) and train on a "
                "cleaned copy: duplicates, conflicts and probable label errors dropped; what was dropped is "
                "recorded in tuneship.json, the check's report written beside --output"})
    data_check: dict[str, Any] | None = field(default=None, metadata={"flag": None})
    """What --clean dropped (set by the check, written into the manifest); not an option anyone gives."""
