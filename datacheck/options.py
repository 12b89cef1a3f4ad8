"""What `tuneship data check` is asked to do: its options (the command line is made from their fields)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneship.arguments import positive_float, positive_int

# `tuneship train`'s options the check takes as they are: which data, read how.
DATA_OPTIONS = ("task", "data", "eval_file", "text_column", "label_column", "encoding")


class DataCheckError(Exception):
    """The data cannot be checked as asked; the message names what is wrong and where."""


@dataclass
class CheckOptions:
    output: Path = field(default=Path("runs/data-check"), metadata={
        "help": "folder for report.json, issues.csv and check.png"})
    training: dict[str, Any] = field(default_factory=dict, metadata={"flag": None})
    encoder: str = field(default="minilm", metadata={
        "help": "the encoder whose mean-pooled embeddings score the examples (minilm, or a local folder)"})
    max_length: int = field(default=128, metadata={"help": "tokens per text for the embeddings",
                                                   "type": positive_int})
    folds: int = field(default=5, metadata={
        "help": "cross-validation folds of the out-of-fold probabilities (every class needs this many examples)",
        "type": positive_int})
    near_threshold: float = field(default=0.97, metadata={
        "help": "cosine similarity of two texts' embeddings from which they are near duplicates",
        "type": positive_float})
    outlier_share: float = field(default=0.01, metadata={
        "help": "share of the training texts reported as outliers (the farthest from their neighbours)"})
    fix: bool = field(default=False, metadata={
        "help": "write a cleaned copy beside the data (<name>.clean<suffix>; built-in data: into --output): "
                "duplicates, conflicts and label issues dropped (or relabelled with --relabel)"})
    relabel: bool = field(default=False, metadata={
        "help": "--fix: give label issues the suggested label instead of dropping them"})
    fix_threshold: float | None = field(default=None, metadata={
        "help": "--fix: act on label issues whose label quality is below this (default: every flagged one)",
        "type": positive_float})
    fine_tune: bool = field(default=False, metadata={
        "help": "also fine-tune the encoder on each fold (one training run per fold: slower) and blend its "
                "out-of-fold probabilities in: better label issues where frozen features are often wrong"})
    fine_tune_epochs: float = field(default=1.0, metadata={"help": "--fine-tune: epochs per fold",
                                                           "type": positive_float})
    chat_model: str | None = field(default=None, metadata={
        "help": "instruct: the base model whose tokenizer and chat template the training uses (default: smollm2)"})
    conversation_tokens: int | None = field(default=None, metadata={
        "help": "instruct: the training's token budget per conversation; longer ones are reported as truncated "
                "(default: the instruct task's, 256)", "type": positive_int})
    seed: int = field(default=42, metadata={"help": "random seed of the folds"})

    @property
    def task(self) -> str:
        return str(self.training.get("task") or "text-classification")
