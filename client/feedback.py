"""Opt-in logging of answered texts for feedback: the classifier hands each answered request to a sink.

The client does not depend on the store: any object with this `record` method works.
`tuneship.monitor.PredictionLog` is the one tuneship ships (SQLite or PostgreSQL, sampling, redaction).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Protocol


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
