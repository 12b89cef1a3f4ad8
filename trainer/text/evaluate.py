"""A text classifier's predictions and scores on labelled texts (`tuneship evaluate`, the training epilogue)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tuneship.trainer.builtin_data import BUILTIN_DATASETS, load_builtin
from tuneship.trainer.checkpoint import read_checkpoint
from tuneship.trainer.errors import DataError
from tuneship.trainer.evaluation import classification_metrics
from tuneship.trainer.text.data import load_file
from tuneship.trainer.text.loading import load_classifier


def predict_logits(model: Any, tokenizer: Any, texts: Sequence[str], max_length: int,
                   batch_size: int = 64) -> npt.NDArray[np.float32]:
    """Logits of a sequence-classification model, batched and sorted by length for speed."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), int(model.config.num_labels)), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in index], truncation=True, max_length=max_length,
                              padding=True, return_tensors="pt")
            batch = {k: v.to(device) for k, v in batch.items()}
            result = model(**batch)
            logits = result.logits if hasattr(result, "logits") else result
            out[index] = logits.float().cpu().numpy()
    return out


def evaluate_texts(checkpoint: Path, data: str, text_column: str = "text", label_column: str = "label",
                   encoding: str = "utf-8", batch_size: int = 64, image_column: str = "image") -> dict[str, Any]:
    dataset = load_builtin(data) if data in BUILTIN_DATASETS else load_file(
        Path(data), text_column, label_column, encoding)
    info = read_checkpoint(checkpoint)
    unknown = sorted(set(dataset.labels) - set(info.labels))
    if unknown:
        raise DataError(f"{data}: labels {unknown} are not labels of {checkpoint} ({', '.join(info.labels)})")
    model, tokenizer, info = load_classifier(checkpoint)
    logits = predict_logits(model, tokenizer, dataset.texts, info.max_length, batch_size)
    index = {label: i for i, label in enumerate(info.labels)}
    return classification_metrics([index[x] for x in dataset.labels], logits.argmax(-1).tolist(), info.labels)
