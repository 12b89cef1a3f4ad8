"""Classification metrics for a checkpoint on labelled texts, as saved in metrics.json."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt


def classification_metrics(true_ids: Sequence[int], predicted_ids: Sequence[int],
                           labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix (rows: true)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    ids = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(
        true_ids, predicted_ids, labels=ids, zero_division=0)
    return {
        "accuracy": float(accuracy_score(true_ids, predicted_ids)),
        "macro_f1": float(f1_score(true_ids, predicted_ids, labels=ids, average="macro", zero_division=0)),
        "per_class": {
            label: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                    "support": int(support[i])}
            for i, label in enumerate(labels)
        },
        "confusion_matrix": {"labels": list(labels),
                             "matrix": confusion_matrix(true_ids, predicted_ids, labels=ids).tolist()},
        "examples": len(true_ids),
    }


def format_metrics(metrics: dict[str, Any]) -> str:
    """A plain-text table for the terminal."""
    lines = [f"accuracy {metrics['accuracy']:.4f}   macro-F1 {metrics['macro_f1']:.4f}   "
             f"({metrics['examples']} examples)", "",
             f"{'class':<16}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for label, row in metrics["per_class"].items():
        lines.append(f"{label:<16}{row['precision']:>10.4f}{row['recall']:>10.4f}{row['f1']:>10.4f}"
                     f"{row['support']:>10}")
    labels = metrics["confusion_matrix"]["labels"]
    width = max(8, *(len(label) + 2 for label in labels))
    lines += ["", "confusion matrix (rows: true, columns: predicted)",
              " " * 16 + "".join(f"{label:>{width}}" for label in labels)]
    for label, row in zip(labels, metrics["confusion_matrix"]["matrix"], strict=True):
        lines.append(f"{label:<16}" + "".join(f"{value:>{width}}" for value in row))
    return "\n".join(lines)


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
