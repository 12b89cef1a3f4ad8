"""Task-level API: classify raw texts with a Triton text-classification ensemble."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from client.errors import InvalidInputError
from client.grpc_client import TritonClient


@dataclass(frozen=True)
class Prediction:
    """One text's result: the winning label, its probability, and every label's probability."""

    label: str
    score: float
    scores: dict[str, float]


class TextClassifier:
    """Sends texts to an ensemble with TEXT in, LABEL and PROBABILITIES out (tuneship's export contract)."""

    def __init__(self, client: TritonClient, model: str = "sentiment", batch_size: int = 32) -> None:
        self.client = client
        self.model = model
        self.batch_size = batch_size
        self._labels: list[str] | None = None

    def labels(self) -> list[str]:
        """Label names in class-id order, from the ensemble's config (`parameters.labels`, a JSON list)."""
        if self._labels is None:
            config = self.client.get_model_config(self.model)
            raw = config.get("parameters", {}).get("labels", {}).get("string_value")
            if not raw:
                raise InvalidInputError(
                    f"model {self.model!r} has no 'labels' parameter in its config: is it a tuneship text classifier?")
            self._labels = [str(label) for label in json.loads(raw)]
        return self._labels

    def classify(self, texts: Sequence[str]) -> list[Prediction]:
        """Classify texts, in requests of at most `batch_size` texts."""
        if isinstance(texts, str):
            raise InvalidInputError("classify() takes a list of texts, not a single string")
        labels = self.labels()
        predictions: list[Prediction] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = list(texts[start:start + self.batch_size])
            data = np.array([[t.encode("utf-8")] for t in chunk], dtype=np.object_)
            result = self.client.infer(self.model, {"TEXT": data}, outputs=["LABEL", "PROBABILITIES"])
            for label, probabilities in zip(result["LABEL"].reshape(-1), result["PROBABILITIES"], strict=True):
                name = label.decode() if isinstance(label, bytes) else str(label)
                scores = {labels[i]: float(p) for i, p in enumerate(probabilities)}
                predictions.append(Prediction(label=name, score=scores[name], scores=scores))
        return predictions
