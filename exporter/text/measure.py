"""A text classifier's variants measured next to the PyTorch reference: accuracy, batch invariance and speed on
tokenized held-out texts, with sessions configured the way Triton will run them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tuneship.exporter.quality import softmax
from tuneship.exporter.selection import VariantReport
from tuneship.exporter.text.validation import onnx_logits
from tuneship.exporter.timing import LatencyTimer
from tuneship.exporter.variants import Variant, session_options


def batch_variation(session: Any, tokenizer: Any, input_names: Sequence[str], texts: Sequence[str],
                    max_length: int, count: int = 16) -> float:
    """The largest change of any class probability of a text between answering it alone and answering it in a
    batch: with all `count` texts at once (padded to the longest), and beside the longest text only."""
    chosen = list(texts[:count])
    if len(chosen) < 2:
        return float("nan")
    alone = np.concatenate([softmax(onnx_logits(session, tokenizer, input_names, [t], max_length)) for t in chosen])
    together = softmax(onnx_logits(session, tokenizer, input_names, chosen, max_length, batch_size=len(chosen)))
    longest = max(chosen, key=len)
    beside = np.concatenate([softmax(onnx_logits(session, tokenizer, input_names, [t, longest], max_length))[:1]
                             for t in chosen])
    return float(max(np.abs(alone - together).max(), np.abs(alone - beside).max()))


def _session(variant: Variant) -> Any:
    """A session configured the way Triton will run the variant, so the figures are the served ones."""
    if variant.format == "tensorrt_plan":
        from tuneship.exporter.text.tensorrt_engine import EngineSession

        return EngineSession(variant.path, variant.profile)
    import onnxruntime as ort

    return ort.InferenceSession(str(variant.path), session_options(variant.graph_level),
                                providers=["CPUExecutionProvider"])


def _feeds(tokenizer: Any, input_names: Sequence[str], texts: Sequence[str], batch: int,
           max_length: int) -> dict[str, np.ndarray[Any, Any]]:
    chosen = [texts[i % len(texts)] for i in range(batch)]
    encoded = tokenizer(chosen, truncation=True, max_length=max_length, padding=True, return_tensors="np")
    return {name: encoded[name].astype(np.int64) for name in input_names}


def time_interleaved(sessions: dict[str, Any], tokenizer: Any, input_names: Sequence[str], texts: Sequence[str],
                     max_length: int, timer: LatencyTimer,
                     batches: Sequence[int] = (1, 32)) -> dict[str, dict[str, float]]:
    """`timer` (time_feeds unless figures are given) on tokenized texts, one batch of each size."""
    return timer(sessions, {batch: _feeds(tokenizer, input_names, texts, batch, max_length) for batch in batches})


def measure(
    variant: Variant,
    tokenizer: Any,
    input_names: Sequence[str],
    reference: np.ndarray[Any, Any],
    validation_texts: Sequence[str],
    gate_texts: Sequence[str],
    gate_label_ids: Sequence[int] | None,
    max_length: int,
) -> tuple[VariantReport, Any, np.ndarray[Any, Any] | None]:
    """Accuracy figures for one variant, its session (for time_interleaved, which fills the latencies) and its
    logits on the gate texts (the published variant's become its reference behaviour)."""
    session = _session(variant)
    logits = onnx_logits(session, tokenizer, input_names, validation_texts, max_length)
    diff = float(np.abs(logits - reference).max())
    agreement = float((logits.argmax(-1) == reference.argmax(-1)).mean())
    accuracy = None
    gate_logits = onnx_logits(session, tokenizer, input_names, gate_texts, max_length) if gate_texts else None
    if gate_label_ids is not None and gate_logits is not None:
        accuracy = float((gate_logits.argmax(-1) == np.asarray(gate_label_ids)).mean())
    report = VariantReport(
        name=variant.name,
        precision=variant.precision,
        description=variant.description,
        size_bytes=variant.path.stat().st_size,
        max_abs_diff=diff,
        label_agreement=agreement,
        accuracy=accuracy,
        accuracy_drop_points=None,
        latency_ms={"1": float("nan"), "32": float("nan")},
        batch_variation=batch_variation(session, tokenizer, input_names, validation_texts, max_length),
    )
    return report, session, gate_logits
