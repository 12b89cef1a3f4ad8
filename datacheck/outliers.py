"""Outliers: the training texts farthest from their nearest neighbours in embedding space (cleanlab's
out-of-distribution score on features), the lowest --outlier-share of them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tuneship.datacheck.findings import Finding
from tuneship.datacheck.rows import Row


def outliers(rows: Sequence[Row], vectors: np.ndarray[Any, Any], share: float) -> list[Finding]:
    count = round(len(rows) * share)
    if count <= 0 or len(rows) < 12:
        return []
    from cleanlab.outlier import OutOfDistribution

    scores = np.asarray(OutOfDistribution().fit_score(features=vectors, verbose=False))
    return [Finding(kind="outlier", file=rows[i].file, line=rows[i].line, text=rows[i].text, given=rows[i].label,
                    score=round(float(scores[i]), 4)) for i in np.argsort(scores)[:count].tolist()]
