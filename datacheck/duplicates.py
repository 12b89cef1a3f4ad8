"""Exact and near duplicates, conflicts and leaks: the same text twice (exact), the same once case, punctuation and
spacing are ignored, or embeddings at least --near-threshold alike; under two labels it is a conflict, across the
training and evaluation data a leak."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np

from tuneship.datacheck.findings import Finding
from tuneship.datacheck.rows import Row

_PUNCTUATION = re.compile(r"[\W_]+", re.UNICODE)


def normalize(text: str) -> str:
    """Case, accents' composition, punctuation and spacing do not make a text new."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_PUNCTUATION.sub(" ", folded).split())


def _similar_pairs(vectors: np.ndarray[Any, Any], threshold: float, chunk: int = 1024) -> list[tuple[int, int, float]]:
    """(i, j, cosine) for i < j with cosine >= threshold (rows are unit vectors)."""
    pairs = []
    for start in range(0, len(vectors), chunk):
        block = vectors[start:start + chunk] @ vectors.T
        rows, columns = np.nonzero(block >= threshold)
        for r, c in zip(rows.tolist(), columns.tolist(), strict=True):
            i = start + r
            if i < c:
                pairs.append((i, c, float(block[r, c])))
    return pairs


def _finding(kind: str, row: Row, first: Row, score: float) -> Finding:
    return Finding(kind=kind, file=row.file, line=row.line, text=row.text, given=row.label,
                   suggested=first.label if kind == "conflict" else "", score=round(score, 4), other=first.where)


def within(rows: Sequence[Row], vectors: np.ndarray[Any, Any], threshold: float) -> list[Finding]:
    """Each later row that repeats an earlier one (the first of a group is kept and named as `other`)."""
    findings: list[Finding] = []
    exact: dict[str, int] = {}
    loose: dict[str, int] = {}
    seen: set[int] = set()
    for i, row in enumerate(rows):
        key = normalize(row.text)
        if row.text in exact:
            first = rows[exact[row.text]]
            kind = "duplicate" if first.label == row.label else "conflict"
            findings.append(_finding(kind, row, first, 1.0))
            seen.add(i)
        elif key in loose:
            first = rows[loose[key]]
            kind = "near_duplicate" if first.label == row.label else "conflict"
            findings.append(_finding(kind, row, first, 1.0))
            seen.add(i)
        else:
            exact[row.text] = i
            loose[key] = i
    for i, j, similarity in _similar_pairs(vectors, threshold):
        if i in seen or j in seen:
            continue
        seen.add(j)
        kind = "near_duplicate" if rows[i].label == rows[j].label else "conflict"
        findings.append(_finding(kind, rows[j], rows[i], similarity))
    return findings


def leaks(train: Sequence[Row], evaluation: Sequence[Row], train_vectors: np.ndarray[Any, Any],
          eval_vectors: np.ndarray[Any, Any], threshold: float) -> list[Finding]:
    """Evaluation rows whose text is in the training data (exactly, loosely or by embeddings)."""
    by_key: dict[str, Row] = {}
    for row in train:
        by_key.setdefault(normalize(row.text), row)
    findings = []
    for i, row in enumerate(evaluation):
        match = by_key.get(normalize(row.text))
        score = 1.0
        if match is None and len(train_vectors):
            similarities = train_vectors @ eval_vectors[i]
            best = int(similarities.argmax())
            if similarities[best] >= threshold:
                match, score = train[best], float(similarities[best])
        if match is not None:
            findings.append(Finding(kind="leak", file=row.file, line=row.line, text=row.text, given=row.label,
                                    suggested=match.label if match.label != row.label else "",
                                    score=round(score, 4), other=match.where))
    return findings
