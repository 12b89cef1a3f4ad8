"""An instruct run's training options (a causal LM tuned on conversations)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tuneship.trainer.config import TASK_HELP, TokenOptions, TrainConfig


@dataclass
class InstructTrainConfig(TokenOptions, TrainConfig):
    task: str = field(default="instruct", metadata=TASK_HELP)
    system_prompt: str | None = field(default=None, metadata={
        "help": "instruct: a system message put before every conversation that has none (the assistant's tone)"})
    max_new_tokens: int = field(default=8, metadata={
        "help": "instruct: tokens generated per held-out prompt when measuring exact-match accuracy"})
    exact_match_samples: int = field(default=200, metadata={
        "help": "instruct: held-out prompts answered greedily before and after fine-tuning (0: skip)"})
