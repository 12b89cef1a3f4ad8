"""A linear head on frozen features (the `features` method of text and image classifiers alike): scikit-learn picks
the regularisation by cross-validation and the fitted head is folded into one weight and bias, so it runs as a
torch Linear layer and exports as such. Shared by both tasks, so it lives in neither's folder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


def cache_directory(config: Any) -> Path:
    return Path(config.feature_cache or Path.home() / ".cache" / "tuneship" / "features")


@dataclass
class LinearHead:
    """logits = features @ weight.T + bias, with the scaler folded in."""

    weight: FloatArray  # [num_labels, hidden]
    bias: FloatArray  # [num_labels]
    search: list[dict[str, float]]  # cross-validated accuracy for each C tried
    best_c: float


def fit_linear_head(features: FloatArray, label_ids: Sequence[int], num_labels: int, classifier: str,
                    seed: int) -> LinearHead:
    """Standardise, pick C by 3-fold cross-validation, fit; fold the standardisation into the weights."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import LinearSVC

    mean = features.mean(axis=0)
    std = features.std(axis=0) + 1e-6
    scaled = (features - mean) / std
    if classifier == "svm":
        estimator: Any = LinearSVC(random_state=seed, max_iter=5000)
    else:
        estimator = LogisticRegression(max_iter=2000, random_state=seed)
    grid = GridSearchCV(estimator, {"C": [0.001, 0.01, 0.1, 1.0]}, cv=3, scoring="accuracy", n_jobs=1)
    grid.fit(scaled, np.asarray(label_ids))
    best = grid.best_estimator_
    coef = np.asarray(best.coef_, dtype=np.float64)
    intercept = np.asarray(best.intercept_, dtype=np.float64)
    if num_labels == 2 and coef.shape[0] == 1:
        # Binary scikit-learn models score class 1 only: logits [0, s] give the same softmax as sigmoid(s).
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    weight = coef / std
    bias = intercept - (coef * (mean / std)).sum(axis=1)
    search = [{"C": float(c), "cv_accuracy": float(s)}
              for c, s in zip(grid.cv_results_["param_C"], grid.cv_results_["mean_test_score"], strict=True)]
    return LinearHead(weight=weight.astype(np.float32), bias=bias.astype(np.float32), search=search,
                      best_c=float(grid.best_params_["C"]))


def plot_search(search: list[dict[str, float]], path: Path, classifier: str) -> None:
    from tuneship.png import save_png

    save_png(lambda: _search_figure(search, classifier), path)


def _search_figure(search: list[dict[str, float]], classifier: str) -> Any:
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(7, 4), dpi=100)
    axis.semilogx([s["C"] for s in search], [s["cv_accuracy"] for s in search], "o-")
    axis.set_xlabel("C (inverse regularisation strength)")
    axis.set_ylabel("3-fold cross-validated accuracy")
    axis.set_title(f"features + {classifier}: choosing C")
    fig.tight_layout()
    return fig
