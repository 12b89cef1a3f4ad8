"""Numerical validation of a text classifier: the ONNX model against the PyTorch model on real held-out texts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tuneship.exporter.validation import FloatArray, ValidationResult


def onnx_logits(session: Any, tokenizer: Any, input_names: Sequence[str], texts: Sequence[str], max_length: int,
                batch_size: int = 64) -> FloatArray:
    outputs = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(list(texts[start:start + batch_size]), truncation=True, max_length=max_length,
                          padding=True, return_tensors="np")
        feeds = {name: batch[name].astype(np.int64) for name in input_names}
        outputs.append(session.run(["logits"], feeds)[0])
    return np.concatenate(outputs, axis=0)


def validate(onnx_path: Path, reference_logits: FloatArray, tokenizer: Any, input_names: Sequence[str],
             texts: Sequence[str], max_length: int, tolerance: float) -> ValidationResult:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    # Same batching as the reference so padding is identical (it should not matter, and if it does
    # the difference is real and belongs in the report).
    logits = onnx_logits(session, tokenizer, input_names, texts, max_length)
    diff = np.abs(logits - reference_logits).max(axis=-1)
    agree = logits.argmax(-1) == reference_logits.argmax(-1)
    worst_index = np.argsort(-diff)[:3]
    worst = [{"text": texts[i][:120], "max_abs_diff": float(diff[i]), "labels_agree": bool(agree[i])}
             for i in worst_index]
    return ValidationResult(max_abs_diff=float(diff.max()), label_agreement=float(agree.mean()),
                            examples=len(texts), tolerance=tolerance, worst=worst)


def torch_logits(model: Any, tokenizer: Any, texts: Sequence[str], max_length: int, batch_size: int = 64) -> FloatArray:
    """Reference logits, batched exactly like onnx_logits."""
    import torch

    outputs = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[start:start + batch_size]), truncation=True, max_length=max_length,
                              padding=True, return_tensors="pt")
            outputs.append(model(**batch).logits.float().numpy())
    return np.concatenate(outputs, axis=0)
