"""Full fine-tuning: a fresh classification head on the encoder, every weight trained."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def load_base_classifier(base: Path, labels: Sequence[str]) -> Any:
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(
        str(base),
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )


def build_model(base: Path, labels: Sequence[str], config: Any) -> Any:
    return load_base_classifier(base, labels)


def save(model: Any, directory: Path) -> dict[str, Any]:
    model.save_pretrained(str(directory), safe_serialization=True)
    return {"adapter": None, "merged": True, "trainable_parameters": _count(model, trainable=True),
            "total_parameters": _count(model, trainable=False)}


def _count(model: Any, trainable: bool) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)
