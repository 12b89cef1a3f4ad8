"""Load any checkpoint the trainer writes as one torch module whose output has `.logits`.

This is the single place that knows how each method's checkpoint fits together; `evaluate` and the
exporter both go through it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tuneship.trainer.checkpoint import CheckpointInfo, read_checkpoint
from tuneship.trainer.errors import TrainingError


def load_classifier(path: str | Path) -> tuple[Any, Any, CheckpointInfo]:
    """(model in eval mode, tokenizer, checkpoint info); a broken checkpoint raises TrainingError naming it."""
    path = Path(path)
    info = read_checkpoint(path)
    try:
        return _load(path, info)
    except TrainingError:
        raise
    except Exception as error:  # corrupt weights, missing files: say which checkpoint and why
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TrainingError(f"{path}: cannot load the checkpoint ({type(error).__name__}: {reason})") from error


def _load(path: Path, info: CheckpointInfo) -> tuple[Any, Any, CheckpointInfo]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    manifest = info.manifest
    if manifest.get("head"):
        from safetensors.torch import load_file
        from transformers import AutoModel

        from tuneship.trainer.text.methods.features import build_classifier_module

        head_path = path / str(manifest["head"])
        if not head_path.is_file():
            raise TrainingError(f"{head_path} is missing: the checkpoint's linear head is needed")
        head = load_file(str(head_path))
        pooling = str(manifest.get("hyperparameters", {}).get("pooling", "mean"))
        encoder = AutoModel.from_pretrained(str(path))
        model = build_classifier_module(encoder, head["weight"], head["bias"], pooling)
        model.config.num_labels = len(info.labels)
        return model.eval(), tokenizer, info
    adapter_supplies_head = bool(manifest.get("adapter")) and not manifest.get("merged", True)
    if adapter_supplies_head:
        # The root holds the base encoder only: transformers reports the classification head as MISSING and
        # "newly initialized", but PeftModel loads the trained head from the adapter just below.
        with _transformers_errors_only():
            model = AutoModelForSequenceClassification.from_pretrained(str(path))
    else:
        model = AutoModelForSequenceClassification.from_pretrained(str(path))
    if adapter_supplies_head:
        from peft import PeftModel

        adapter = path / str(manifest["adapter"])
        if not (adapter / "adapter_config.json").is_file():
            raise TrainingError(f"{adapter}: adapter files are missing (adapter_config.json)")
        model = PeftModel.from_pretrained(model, str(adapter))
    return model.eval(), tokenizer, info


@contextmanager
def _transformers_errors_only() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)
