"""What every classifier of tuneship's export contract shares (LABEL and PROBABILITIES out, label names in the
config's `labels` parameter or the labels file): labels read once, requests of `batch_size` items, `concurrency` at
a time, predictions logged when asked. A task's classifier (text_classifier.py, image_classifier.py) adds how its
items are checked and sent: `_split` and `_inputs`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from tuneship.client.aio_client import AsyncTritonClient
from tuneship.client.errors import InvalidInputError, PermissionDeniedError
from tuneship.client.feedback import PredictionSink, record_safely
from tuneship.client.grpc_client import TritonClient
from tuneship.client.results import InferResult
from tuneship.model_names import step_model

ClientT = TypeVar("ClientT", TritonClient, AsyncTritonClient)


@dataclass(frozen=True)
class Prediction:
    """One text's result: the winning label, its probability, and every label's probability."""

    label: str
    score: float
    scores: dict[str, float]


def _classification_request(model: str, metadata: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, int], bool]:
    """(the model to ask, its inputs, the classification asked of PROBABILITIES, whether it is a probe) for
    Triton's classification extension with every class asked for: its answer lists "score:index:label" from the
    labels file, needing no model-config access. An ensemble's `<model>_postprocess` takes zero logits; a single-model
    classifier takes one text itself, sent as a probe so that it counts in no quality metric."""
    count = int(metadata["outputs"][-1]["shape"][-1])
    classes = {"PROBABILITIES": count}
    if metadata.get("platform") == "ensemble":
        return step_model(model, "postprocess"), {"logits": np.zeros((1, count), dtype=np.float32)}, classes, False
    return model, {"TEXT": np.array([[b"label lookup"]], dtype=np.object_)}, classes, True


def _probe_parameters(probe: bool) -> dict[str, bool | int | str] | None:
    from tuneship.client.probe import PROBE_PARAMETER

    return {PROBE_PARAMETER: True} if probe else None


def _labels_from_classification(entries: Any) -> list[str]:
    by_index: dict[int, str] = {}
    for entry in np.asarray(entries).reshape(-1):
        text = entry.decode("utf-8") if isinstance(entry, bytes) else str(entry)
        _score, index, label = text.split(":", 2)
        by_index[int(index)] = label
    return [by_index[i] for i in range(len(by_index))]


def _labels_from_config(model: str, config: dict[str, Any]) -> list[str]:
    raw = config.get("parameters", {}).get("labels", {}).get("string_value")
    if not raw:
        raise InvalidInputError(
            f"model {model!r} has no 'labels' parameter in its config: is it a tuneship text classifier?")
    return [str(label) for label in json.loads(raw)]


def _predictions(result: InferResult, labels: list[str]) -> list[Prediction]:
    predictions = []
    for label, probabilities in zip(result.strings("LABEL"), result["PROBABILITIES"], strict=True):
        scores = {labels[i]: float(p) for i, p in enumerate(probabilities)}
        predictions.append(Prediction(label=label, score=scores[label], scores=scores))
    return predictions


class _Settings(Generic[ClientT]):
    """What both classifiers hold: the client, the ensemble's name, request size and parallelism."""

    def __init__(self, client: ClientT, model: str = "sentiment", batch_size: int = 32, concurrency: int = 4,
                 log: PredictionSink | None = None) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer (texts per request), got {batch_size!r}")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive integer (requests in flight), got {concurrency!r}")
        self.client: ClientT = client
        self.model = model
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.log = log  # opt-in: answered texts go to a feedback store (tuneship.monitor.PredictionLog)
        self._labels: list[str] | None = None

    def _record(self, result: InferResult, chunk: list[str], predictions: list[Prediction]) -> None:
        if self.log is not None:
            record_safely(self.log, self.model, result.version or None, chunk, [p.label for p in predictions],
                          [p.scores for p in predictions])


class Classifier(_Settings[TritonClient]):
    """What every classifier of tuneship's export contract shares: labels from the ensemble, requests of
    `batch_size` items, `concurrency` at a time. A task supplies `_split` (check and chunk) and `_inputs`."""

    def _split(self, items: Sequence[Any]) -> list[list[Any]]:
        raise NotImplementedError

    def _inputs(self, chunk: list[Any]) -> dict[str, np.ndarray[Any, Any]]:
        raise NotImplementedError

    def labels(self) -> list[str]:
        """Label names in class-id order, as published with the model.

        Read from the model's config; where the model-config API is restricted to admins, from the labels file
        (the ensemble's post-processing model's, or a single-model classifier's) through Triton's classification
        extension instead.
        """
        if self._labels is None:
            try:
                self._labels = _labels_from_config(self.model, self.client.get_model_config(self.model))
            except PermissionDeniedError:
                target, inputs, classes, probe = _classification_request(
                    self.model, self.client.get_model_metadata(self.model))
                response = self.client.infer(target, inputs, outputs=list(classes), classes=classes, validate=False,
                                             parameters=_probe_parameters(probe))
                self._labels = _labels_from_classification(response["PROBABILITIES"])
        return self._labels

    def classify(self, items: Sequence[Any], timeout_s: float | None = None) -> list[Prediction]:
        """Predictions in the order of `items`."""
        chunks = self._split(items)
        labels = self.labels()

        def send(chunk: list[Any]) -> list[Prediction]:
            result = self.client.infer(self.model, self._inputs(chunk), outputs=["LABEL", "PROBABILITIES"],
                                       timeout_s=timeout_s)
            predictions = _predictions(result, labels)
            self._record(result, chunk, predictions)
            return predictions

        if len(chunks) <= 1 or self.concurrency <= 1:
            return [p for chunk in chunks for p in send(chunk)]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return [p for part in pool.map(send, chunks) for p in part]


class AsyncClassifier(_Settings[AsyncTritonClient]):
    """The asyncio twin of Classifier."""

    def _split(self, items: Sequence[Any]) -> list[list[Any]]:
        raise NotImplementedError

    def _inputs(self, chunk: list[Any]) -> dict[str, np.ndarray[Any, Any]]:
        raise NotImplementedError

    async def labels(self) -> list[str]:
        if self._labels is None:
            try:
                self._labels = _labels_from_config(self.model, await self.client.get_model_config(self.model))
            except PermissionDeniedError:
                target, inputs, classes, probe = _classification_request(
                    self.model, await self.client.get_model_metadata(self.model))
                response = await self.client.infer(target, inputs, outputs=list(classes), classes=classes,
                                                   validate=False, parameters=_probe_parameters(probe))
                self._labels = _labels_from_classification(response["PROBABILITIES"])
        return self._labels

    async def classify(self, items: Sequence[Any], timeout_s: float | None = None) -> list[Prediction]:
        chunks = self._split(items)
        labels = await self.labels()
        gate = asyncio.Semaphore(max(1, self.concurrency))

        async def send(chunk: list[Any]) -> list[Prediction]:
            async with gate:
                result = await self.client.infer(self.model, self._inputs(chunk), outputs=["LABEL", "PROBABILITIES"],
                                                 timeout_s=timeout_s)
            predictions = _predictions(result, labels)
            if self.log is not None:
                await asyncio.to_thread(self._record, result, chunk, predictions)
            return predictions

        parts = await asyncio.gather(*(send(chunk) for chunk in chunks))
        return [p for part in parts for p in part]
