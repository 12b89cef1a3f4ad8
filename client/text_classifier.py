"""Task-level API: classify raw texts with a Triton text-classification ensemble (tuneship's export contract:
TEXT in, LABEL and PROBABILITIES out, label names in the ensemble config's `labels` parameter)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tuneship.client.classifier import AsyncClassifier, Classifier, Prediction
from tuneship.client.errors import InvalidInputError

__all__ = ["AsyncTextClassifier", "Prediction", "TextClassifier", "text_request"]


def text_request(texts: Sequence[str]) -> dict[str, np.ndarray[Any, Any]]:
    """The TEXT tensor of a request: one row per text, shape [batch, 1]."""
    return {"TEXT": np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_).reshape(len(texts), 1)}


def _chunks(texts: Sequence[str], size: int) -> list[list[str]]:
    if isinstance(texts, str):
        raise InvalidInputError("classify() takes a list of texts, not a single string")
    if any(not isinstance(t, str) for t in texts):
        raise InvalidInputError("classify() takes strings only")
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        # The server refuses them too; saying so here names every one and costs no round trip.
        raise InvalidInputError(f"texts at positions {empty[:10]} are empty or only whitespace: nothing to classify")
    return [list(texts[i:i + size]) for i in range(0, len(texts), size)]


class TextClassifier(Classifier):
    """Classify texts; long lists go out as requests of `batch_size` texts, `concurrency` at a time."""

    def _split(self, items: Sequence[Any]) -> list[list[Any]]:
        return _chunks(items, self.batch_size)

    def _inputs(self, chunk: list[Any]) -> dict[str, np.ndarray[Any, Any]]:
        return text_request(chunk)

    def classify(self, texts: Sequence[str], timeout_s: float | None = None) -> list[Prediction]:
        """Predictions in the order of `texts`."""
        return super().classify(texts, timeout_s)


class AsyncTextClassifier(AsyncClassifier):
    """The asyncio twin of TextClassifier."""

    def _split(self, items: Sequence[Any]) -> list[list[Any]]:
        return _chunks(items, self.batch_size)

    def _inputs(self, chunk: list[Any]) -> dict[str, np.ndarray[Any, Any]]:
        return text_request(chunk)

    async def classify(self, texts: Sequence[str], timeout_s: float | None = None) -> list[Prediction]:
        return await super().classify(texts, timeout_s)
