"""A published classifier's reference behaviour: what its answers looked like on held-out data at export.

Written as `reference.json` into the postprocess model's version folder, so every served version carries its own
baseline; the postprocess model exports it as gauges beside the live counts, and Prometheus recording rules turn
the two into drift figures (population stability index) without any other store.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# Bins of the top-class probability, by lower edge. The same edges are in the served postprocess model, which
# reads them from reference.json (so a change here changes both together).
CONFIDENCE_EDGES = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
REFERENCE_FILE = "reference.json"


def bin_names(edges: Sequence[float] = CONFIDENCE_EDGES) -> list[str]:
    return [f"{edge:.2f}" for edge in edges]


def confidence_bins(top: np.ndarray[Any, Any], edges: Sequence[float] = CONFIDENCE_EDGES) -> np.ndarray[Any, Any]:
    """Bin index of each top-class probability (the last bin is closed at 1)."""
    return np.clip(np.searchsorted(np.asarray(edges), top, side="right") - 1, 0, len(edges) - 1)


def softmax(logits: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=-1, keepdims=True))


def macro_f1(true_ids: Sequence[int], predicted_ids: Sequence[int], num_labels: int) -> float:
    scores = []
    true, predicted = np.asarray(true_ids), np.asarray(predicted_ids)
    for label in range(num_labels):
        tp = int(((predicted == label) & (true == label)).sum())
        fp = int(((predicted == label) & (true != label)).sum())
        fn = int(((predicted != label) & (true == label)).sum())
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def reference_behaviour(logits: np.ndarray[Any, Any], labels: Sequence[str],
                        true_ids: Sequence[int] | None) -> dict[str, Any]:
    """Label shares, the distribution of the top-class probability, and accuracy on the given held-out texts."""
    probabilities = softmax(np.asarray(logits, dtype=np.float64))
    predicted = probabilities.argmax(axis=-1)
    top = probabilities.max(axis=-1)
    count = len(predicted)
    label_counts = np.bincount(predicted, minlength=len(labels))
    bin_counts = np.bincount(confidence_bins(top), minlength=len(CONFIDENCE_EDGES))
    reference: dict[str, Any] = {
        "samples": count,
        "labels": list(labels),
        "label_share": {label: round(float(n) / count, 6) for label, n in zip(labels, label_counts, strict=True)},
        "confidence_edges": list(CONFIDENCE_EDGES),
        "confidence_share": {name: round(float(n) / count, 6)
                             for name, n in zip(bin_names(), bin_counts, strict=True)},
        "mean_confidence": round(float(top.mean()), 6),
        "accuracy": None,
        "macro_f1": None,
    }
    if true_ids is not None and len(true_ids) == count:
        correct = predicted == np.asarray(true_ids)
        reference["accuracy"] = round(float(correct.mean()), 6)
        reference["macro_f1"] = round(macro_f1(true_ids, predicted.tolist(), len(labels)), 6)
        reference["bin_accuracy"] = bin_accuracy(top, correct)
    return reference


def bin_accuracy(top: np.ndarray[Any, Any], correct: np.ndarray[Any, Any],
                 edges: Sequence[float] = CONFIDENCE_EDGES) -> dict[str, float]:
    """How often an answer is right, per bin of its top-class probability: the calibration that estimates
    accuracy before labels arrive (confidence-based performance estimation, as NannyML's CBPE does).

    An isotonic fit of right-or-wrong on the top-class probability (scikit-learn's), averaged over the held-out
    answers in each bin; a bin with none takes the fit at its middle. Live, the estimate is the sum over bins of
    the live share of answers in the bin times this accuracy (a Prometheus recording rule): it moves when the
    confidences move, with no labels."""
    from sklearn.isotonic import IsotonicRegression

    fit = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    fit.fit(top.astype(np.float64), correct.astype(np.float64))
    calibrated = fit.predict(top.astype(np.float64))
    bins = confidence_bins(top, edges)
    uppers = [*edges[1:], 1.0]
    table = {}
    for index, name in enumerate(bin_names(edges)):
        inside = bins == index
        value = calibrated[inside].mean() if inside.any() else fit.predict([(edges[index] + uppers[index]) / 2])[0]
        table[name] = round(float(value), 6)
    return table


def psi(live: Mapping[str, float], reference: Mapping[str, float], floor: float = 0.001) -> float:
    """Population stability index of two share tables, with the floor the recording rules use for empty bins."""
    total = 0.0
    for key, expected in reference.items():
        actual = max(live.get(key, 0.0), floor)
        expected = max(expected, floor)
        total += (actual - expected) * math.log(actual / expected)
    return total
