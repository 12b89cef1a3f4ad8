"""A text classifier's training options (the encoder methods', the features head's and the tokens')."""

from __future__ import annotations

from dataclasses import dataclass, field

from tuneship.trainer.config import TASK_HELP, LinearHeadOptions, TokenOptions, TrainConfig


@dataclass
class TextTrainConfig(TokenOptions, LinearHeadOptions, TrainConfig):
    task: str = field(default="text-classification", metadata=TASK_HELP)
    text_column: str = field(default="text", metadata={"help": "column holding the text"})
    group_by_length: bool = field(default=True, metadata={
        "help": "batch texts of similar length together (less padding, faster on CPU)"})
    pooling: str = field(default="mean", metadata={"help": "features: how token vectors become one: mean or cls"})
