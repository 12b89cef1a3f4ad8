"""Opt-in logging of answers for feedback: the classifier hands each answered request to a sink, the generator
each finished generation.

The client does not depend on the store: any object with these `record` / `record_generation` methods works.
`tuneship.monitor.PredictionLog` is the one tuneship ships (SQLite or PostgreSQL, sampling, redaction).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class PredictionSink(Protocol):
    def record(self, model: str, version: str | None, texts: Sequence[str], labels: Sequence[str],
               probabilities: Sequence[dict[str, float]]) -> None: ...


def record_safely(sink: PredictionSink, model: str, version: str | None, texts: Sequence[str],
                  labels: Sequence[str], probabilities: Sequence[dict[str, float]]) -> None:
    """Log without ever failing the caller's classification: a broken store is warned about, not raised."""
    try:
        sink.record(model, version, texts, labels, probabilities)
    except Exception as error:  # the answer is already there; losing a log row must not lose it
        warnings.warn(f"prediction log failed ({type(error).__name__}: {str(error).splitlines()[0][:200]}); "
                      "the classification itself succeeded", RuntimeWarning, stacklevel=3)


@dataclass(frozen=True)
class GenerationRecord:
    """One finished generation as a sink receives it: what was asked, how, and what came back."""

    model: str
    version: str | None
    prompt: str | list[dict[str, str]]  # the text prompt, or the chat messages
    answer: str
    finish_reason: str
    tokens: int
    adapter: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)  # the sampling parameters the caller set


class GenerationSink(Protocol):
    def record_generation(self, record: GenerationRecord) -> str | None:
        """Log `record`; the id it is logged under (ratings and corrections name it), or None if not sampled."""
        ...


def record_generation_safely(sink: GenerationSink, record: GenerationRecord) -> str | None:
    """Log without ever failing the caller's generation: a broken store is warned about, not raised."""
    try:
        return sink.record_generation(record)
    except Exception as error:  # the answer is already there; losing a log row must not lose it
        warnings.warn(f"generation log failed ({type(error).__name__}: {str(error).splitlines()[0][:200]}); "
                      "the generation itself succeeded", RuntimeWarning, stacklevel=3)
        return None
