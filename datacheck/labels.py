"""Label issues: out-of-fold probabilities from two cheap models that see the texts differently (a linear model on
the encoder's embeddings, one on TF-IDF words and pairs), blended; cleanlab ranks the given labels by them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuneship.datacheck.options import DataCheckError

Array = np.ndarray[Any, Any]


@dataclass
class LabelScores:
    probabilities: Array
    """Out-of-fold class probabilities [rows, classes]."""
    quality: Array
    """The given label's quality per row (cleanlab's self-confidence: lower is more likely wrong)."""
    flagged: list[int]
    """Rows cleanlab finds mislabelled, worst first."""
    out_of_fold_accuracy: float


def check_folds(labels: Sequence[str], folds: int) -> None:
    counts = Counter(labels)
    if len(counts) < 2:
        raise DataCheckError(f"only one class ({next(iter(counts))!r}): label issues need at least two")
    rare = sorted((count, label) for label, count in counts.items() if count < folds)
    if rare:
        count, label = rare[0]
        raise DataCheckError(f"class {label!r} has {count} examples; {folds}-fold cross-validation needs at least "
                             f"{folds} per class (add examples, or lower --folds)")


def out_of_fold(embeddings: Array, texts: Sequence[str], label_ids: Array, folds: int, seed: int) -> Array:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    dense = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=3000))
    words = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
                          LogisticRegression(C=4.0, max_iter=3000))
    from_embeddings = cross_val_predict(dense, embeddings, label_ids, cv=split, method="predict_proba")
    from_words = cross_val_predict(words, np.asarray(texts, dtype=object), label_ids, cv=split,
                                   method="predict_proba")
    return blend(from_embeddings, from_words, label_ids)


def blend(first: Array, second: Array, label_ids: Array) -> Array:
    """The two models' probabilities mixed in the proportion with the lowest out-of-fold log loss (one weight
    on a grid: an encoder that knows nothing of the domain gets little say, a good one most of it)."""
    rows = np.arange(len(label_ids))

    def loss(weight: float) -> float:
        mixed = weight * first + (1.0 - weight) * second
        return float(-np.log(np.clip(mixed[rows, label_ids], 1e-12, None)).mean())

    weight = min((w / 10 for w in range(11)), key=loss)
    return np.asarray(weight * first + (1.0 - weight) * second)


def label_scores(embeddings: Array, texts: Sequence[str], labels: Sequence[str], classes: list[str], folds: int,
                 seed: int, fine_tuned: Callable[[Array], Array] | None = None) -> LabelScores:
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    check_folds(labels, folds)
    index = {label: i for i, label in enumerate(classes)}
    ids = np.asarray([index[label] for label in labels])
    probabilities = out_of_fold(embeddings, texts, ids, folds, seed)
    if fine_tuned is not None:  # --fine-tune: blended in by the same rule (a weight on the log loss)
        probabilities = blend(fine_tuned(ids), probabilities, ids)
    quality = np.asarray(get_label_quality_scores(ids, probabilities))
    # n_jobs=1: cleanlab's default forks a process pool (one task per class, nothing to gain at a few classes), and
    # a fork of a process holding torch's OpenMP or gRPC threads can hang in the child.
    flagged = [int(i) for i in find_label_issues(ids, probabilities, return_indices_ranked_by="self_confidence",
                                                 n_jobs=1)]
    accuracy = float((probabilities.argmax(axis=1) == ids).mean())
    return LabelScores(probabilities, quality, flagged, accuracy)
