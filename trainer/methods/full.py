"""Full fine-tuning: a fresh classification head on the encoder, every weight trained."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def build_model(base: Path, labels: Sequence[str], config: Any) -> Any:
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(
        str(base),
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )


def model_for_saving(model: Any) -> Any:
    """The plain Hugging Face model the checkpoint should hold."""
    return model
