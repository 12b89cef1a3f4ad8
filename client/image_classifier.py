"""Task-level API for images: classify photos with a Triton image-classification ensemble (tuneship's export
contract: encoded image bytes in IMAGE, LABEL and PROBABILITIES out, labels in the ensemble config)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tuneship.client.classifier import AsyncClassifier, Classifier, Prediction
from tuneship.client.errors import InvalidInputError
from tuneship.client.images import ImageInput, image_bytes

__all__ = ["AsyncImageClassifier", "ImageClassifier", "ImageInput", "Prediction"]


def _split(images: Sequence[Any], size: int) -> list[list[bytes]]:
    if isinstance(images, (str, bytes, bytearray, memoryview)) or (
            isinstance(images, np.ndarray) and images.dtype != np.object_ and images.ndim <= 3):
        raise InvalidInputError("classify() takes a list of images (paths, bytes or arrays), not a single image")
    encoded = [image_bytes(item, position) for position, item in enumerate(images)]
    return [encoded[i:i + size] for i in range(0, len(encoded), size)]


def image_request(chunk: list[bytes]) -> dict[str, np.ndarray[Any, Any]]:
    """The IMAGE tensor of a request: one row per encoded image, shape [batch, 1]."""
    images = np.empty((len(chunk), 1), dtype=np.object_)
    images[:, 0] = chunk
    return {"IMAGE": images}


class ImageClassifier(Classifier):
    """Classify images given as paths, encoded bytes (JPEG, PNG, ...) or arrays ([H, W] or [H, W, 3] uint8);
    long lists go out as requests of `batch_size` images, `concurrency` at a time. The server decodes, resizes
    and normalises them exactly as the model was trained."""

    def _split(self, items: Sequence[Any]) -> list[list[Any]]:
        return _split(items, self.batch_size)

    def _inputs(self, chunk: list[Any]) -> dict[str, np.ndarray[Any, Any]]:
        return image_request(chunk)

    def classify(self, images: Sequence[ImageInput], timeout_s: float | None = None) -> list[Prediction]:
        """Predictions in the order of `images`."""
        return super().classify(images, timeout_s)


class AsyncImageClassifier(AsyncClassifier):
    """The asyncio twin of ImageClassifier."""

    def _split(self, items: Sequence[Any]) -> list[list[Any]]:
        return _split(items, self.batch_size)

    def _inputs(self, chunk: list[Any]) -> dict[str, np.ndarray[Any, Any]]:
        return image_request(chunk)

    async def classify(self, images: Sequence[ImageInput], timeout_s: float | None = None) -> list[Prediction]:
        return await super().classify(images, timeout_s)
