"""`tuneship update`'s options, declared once: its flags are made from them (tuneship.options). Light on purpose:
the command's dispatcher imports it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from tuneship.arguments import existing_path, grpc_url, non_negative_float, positive_float, positive_int

URL_HELP = ("a running server (explicit model control) to switch to the new version; without it the files are "
            "published and a polling server picks them up")
ADMIN_KEY_HELP = "key for Triton's restricted APIs (default: $TUNESHIP_ADMIN_KEY)"


def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a fraction between 0 and 1")
    return value


def fraction_or_zero(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1")
    return value


@dataclass
class UpdateOptions:
    name: str = field(metadata={"help": "the served pipeline (ensemble) or generator to update", "flag": "--model"})
    new_data: Path = field(metadata={"help": "labelled new data (CSV/TSV/JSONL/Parquet); for an instruct model, "
                                             "conversations whose last turn is the right answer (JSONL: what "
                                             "`tuneship feedback export` writes from corrections)",
                                     "positional": True, "type": existing_path})
    output: Path = field(metadata={"help": "where the candidate checkpoint is written"})
    repository: Path = field(default=Path("model_repository"), metadata={"help": "the Triton model repository"})
    checkpoint: Path | None = field(default=None, metadata={
        "help": "the serving version's checkpoint (default: as its export report says)", "type": Path})
    holdout_fraction: float = field(default=0.3, metadata={
        "help": "share of the new data held out for the promotion gate", "type": fraction})
    replay_ratio: float = field(default=1.0, metadata={
        "help": "original training examples mixed in per new training example", "type": non_negative_float})
    margin_points: float = field(default=1.0, metadata={
        "help": "points of accuracy (instruct: exact match) on the held-out new data the candidate must gain",
        "flag": "--margin",
        "type": non_negative_float})
    max_original_drop_points: float = field(default=1.0, metadata={
        "help": "points of accuracy (instruct: exact match) on the original eval set the candidate may lose",
        "flag": "--max-original-drop",
        "type": non_negative_float})
    epochs: float | None = field(default=None, metadata={"help": "default: the original recipe's",
                                                         "type": positive_float})
    learning_rate: float | None = field(default=None, metadata={"help": "default: the original recipe's",
                                                                "type": positive_float})
    seed: int = field(default=42, metadata={"help": "random seed (split, replay sample, training)"})
    text_column: str = field(default="text", metadata={"help": "column holding the text"})
    label_column: str = field(default="label", metadata={"help": "column holding the label"})
    url: str | None = field(default=None, metadata={"help": URL_HELP, "type": grpc_url})
    admin_key: str | None = field(default=None, metadata={"help": ADMIN_KEY_HELP, "type": str})
    publish: bool = field(default=True, metadata={"help": "publish a candidate that passes (--no-publish: train "
                                                          "and gate only)"})
    shadow_store: str | None = field(default=None, metadata={
        "help": "feedback store with logged live answers (PredictionLog): the candidate answers the latest of them "
                "and its agreement with the serving version is reported", "type": str})
    shadow_texts: int = field(default=1000, metadata={"help": "how many logged texts", "type": positive_int})
    min_shadow_agreement: float = field(default=0.0, metadata={
        "help": "refuse a candidate that agrees less often than this (0: report only)", "type": fraction_or_zero})
