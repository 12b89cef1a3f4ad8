"""Labelled text data: reading text tables (trainer/tables.py reads the rows), validating them, splitting them.

Every check runs before training starts, and every message names the file, the line and the field,
so a user can open the file and fix it.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tuneship.trainer.errors import DataError
from tuneship.trainer.tables import MISSING_LABELS as MISSING_LABELS
from tuneship.trainer.tables import jsonl_records as jsonl_records
from tuneship.trainer.tables import read_rows, stratify


@dataclass
class Example:
    text: str
    label: str
    source: str  # "file:line", for messages


@dataclass
class LabelledData:
    """Texts with string labels; `name` says where they came from."""

    name: str
    examples: list[Example]
    duplicates_dropped: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        return [e.text for e in self.examples]

    @property
    def labels(self) -> list[str]:
        return [e.label for e in self.examples]

    def label_counts(self) -> Counter[str]:
        return Counter(self.labels)

    def head(self, limit: int | None, seed: int) -> LabelledData:
        """A seeded, stratified subset of at most `limit` examples (all when limit is None).

        A class too rare to keep a row in the subset is named in a warning (and in `notes`).
        """
        if limit is None or limit >= len(self.examples):
            return self
        _, kept = stratified_split(self, limit / len(self.examples), seed)
        subset = LabelledData(self.name, kept.examples[:limit], self.duplicates_dropped, list(self.notes))
        lost = sorted(set(self.label_counts()) - set(subset.label_counts()))
        if lost:
            message = (f"{self.name}: the subset of {limit} rows has no example of {', '.join(map(repr, lost))}; "
                       "raise the --max-*-samples limit to keep every class")
            subset.notes.append(message)
            warnings.warn(message, stacklevel=2)
        return subset


def load_file(path: Path, text_column: str = "text", label_column: str = "label",
              encoding: str = "utf-8", require_labels: bool = True) -> LabelledData:
    """Read and validate a labelled file; duplicated rows are dropped with a warning."""
    examples: list[Example] = []
    seen: set[tuple[str, str]] = set()
    duplicates = 0
    columns_checked = False
    for line, record in read_rows(path, encoding):
        if not columns_checked:
            wanted = [text_column] + ([label_column] if require_labels else [])
            for column in wanted:
                if column not in record:
                    raise DataError(
                        f"{path}:{line}: no column {column!r} (columns: {', '.join(sorted(record)) or 'none'}); "
                        f"choose with --text-column / --label-column"
                    )
            columns_checked = True
        text = (record.get(text_column) or "").strip()
        label = (record.get(label_column) or "").strip()
        if not text:
            raise DataError(f"{path}:{line}: field {text_column!r} is empty")
        if require_labels and not label:
            raise DataError(f"{path}:{line}: field {label_column!r} is missing (every row needs a label)")
        if require_labels and label.lower() in MISSING_LABELS:
            raise DataError(f"{path}:{line}: field {label_column!r} is {label!r}, a missing value rather than a "
                            "class; give the row a label or remove it")
        key = (text, label)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        examples.append(Example(text=text, label=label, source=f"{path}:{line}"))
    if not examples:
        raise DataError(f"{path}: no data rows")
    data = LabelledData(name=str(path), examples=examples, duplicates_dropped=duplicates)
    if duplicates:
        message = f"{path}: {duplicates} duplicated rows dropped"
        data.notes.append(message)
        warnings.warn(message, stacklevel=2)
    return data


def check_labels(train: LabelledData, evaluation: LabelledData | None) -> list[str]:
    """Label checks across splits; returns the sorted label list."""
    counts = train.label_counts()
    if len(counts) < 2:
        only = next(iter(counts), "none")
        raise DataError(f"{train.name}: at least two classes are needed to train a classifier, found only {only!r}")
    labels = sorted(counts)
    if evaluation is not None:
        for example in evaluation.examples:
            if example.label not in counts:
                raise DataError(
                    f"{example.source}: label {example.label!r} does not occur in the training data "
                    f"(training labels: {', '.join(labels)})"
                )
    return labels


def imbalance_report(data: LabelledData) -> str:
    counts = data.label_counts()
    total = sum(counts.values())
    parts = [f"{label} {n} ({100 * n / total:.1f}%)" for label, n in sorted(counts.items())]
    ratio = max(counts.values()) / max(1, min(counts.values()))
    warning = "  (imbalanced: consider macro-F1 over accuracy)" if ratio > 3 else ""
    return f"{data.name}: {total} examples: " + ", ".join(parts) + warning


def stratified_split(data: LabelledData, eval_fraction: float, seed: int) -> tuple[LabelledData, LabelledData]:
    """Seeded split that keeps each label's share in both parts."""
    train, held = stratify(data.examples, eval_fraction, seed)
    return (LabelledData(f"{data.name} (train split)", train, data.duplicates_dropped, data.notes),
            LabelledData(f"{data.name} (eval split)", held))


def write_jsonl(path: Path, texts: Sequence[str], labels: Sequence[str]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for text, label in zip(texts, labels, strict=True):
            handle.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")
