"""An image classifier's scores on labelled images (`tuneship evaluate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneship.trainer.errors import DataError
from tuneship.trainer.evaluation import classification_metrics


def evaluate_images(checkpoint: Path, data: str, text_column: str = "text", label_column: str = "label",
                    encoding: str = "utf-8", batch_size: int = 64, image_column: str = "image") -> dict[str, Any]:
    from tuneship.trainer.image.data import load_images
    from tuneship.trainer.image.preprocessing import PreprocessSpec
    from tuneship.trainer.image.training import load_image_classifier, predict

    images = load_images(data, image_column, label_column)
    model, manifest = load_image_classifier(checkpoint)
    labels = [str(label) for label in manifest["labels"]]
    unknown = sorted(set(images.labels) - set(labels))
    if unknown:
        raise DataError(f"{data}: labels {unknown} are not labels of {checkpoint} ({', '.join(labels)})")
    logits = predict(model, images.images, PreprocessSpec.from_dict(manifest["preprocessing"]), batch_size)
    index = {label: i for i, label in enumerate(labels)}
    return classification_metrics([index[x] for x in images.labels], logits.argmax(-1).tolist(), labels)
