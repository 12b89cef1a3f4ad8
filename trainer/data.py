"""Labelled text data: reading CSV / TSV / JSONL / Parquet files, validating them, splitting them.

Every check runs before training starts, and every message names the file, the line and the field,
so a user can open the file and fix it.
"""

from __future__ import annotations

import csv
import io
import json
import random
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tuneship.trainer.errors import DataError


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


def _decode(path: Path, encoding: str) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: bytes that are not valid {encoding} ({error.reason} at byte {error.start}); "
            "re-save the file as UTF-8 or pass --encoding (e.g. latin-1)"
        ) from None


# csv's default field limit (128 KiB) turns one long review into a traceback; texts are truncated at
# tokenization anyway, so long fields are read whole. The limit still guards against a runaway quote.
_FIELD_LIMIT = 64 * 1024 * 1024

# Values that mean "no label" in exported tables; taking them as a class trains a nonsense class.
MISSING_LABELS = frozenset({"nan", "none", "null", "na", "n/a", "<na>"})


def _rows_from_delimited(path: Path, encoding: str, delimiter: str) -> Iterable[tuple[int, dict[str, str]]]:
    text = _decode(path, encoding)
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    if reader.fieldnames is None:
        raise DataError(f"{path}:1: the file is empty (expected a header row)")
    line = 1
    try:
        for row in reader:
            yield line + 1, {k: v for k, v in row.items() if k is not None}
            line = reader.line_num
    except csv.Error as error:
        raise DataError(f"{path}:{reader.line_num}: cannot parse the row ({error}); check its quoting") from None


def jsonl_records(path: Path, encoding: str = "utf-8") -> Iterable[tuple[int, Any]]:
    """(line number, parsed JSON) for each non-blank line; errors name the file and line."""
    # Split on "\n" only: str.splitlines() also splits on U+2028 and other separators that JSON strings may hold.
    for number, line in enumerate(_decode(path, encoding).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{number}: not valid JSON ({error.msg} at column {error.colno})") from None


def _rows_from_jsonl(path: Path, encoding: str) -> Iterable[tuple[int, dict[str, str]]]:
    for number, record in jsonl_records(path, encoding):
        if not isinstance(record, dict):
            raise DataError(f"{path}:{number}: expected a JSON object per line, got {type(record).__name__}")
        yield number, {k: "" if v is None else str(v) for k, v in record.items()}


def _rows_from_parquet(path: Path) -> Iterable[tuple[int, dict[str, str]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pyarrow: pip install pyarrow") from None
    table = pq.read_table(path)
    for number, record in enumerate(table.to_pylist(), start=1):
        yield number, {k: "" if v is None else str(v) for k, v in record.items()}


def read_rows(path: Path, encoding: str = "utf-8") -> Iterable[tuple[int, dict[str, str]]]:
    """(line number, record) pairs; the format comes from the file's suffix."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _rows_from_delimited(path, encoding, ",")
    if suffix in (".tsv", ".tab"):
        return _rows_from_delimited(path, encoding, "\t")
    if suffix in (".jsonl", ".ndjson"):
        return _rows_from_jsonl(path, encoding)
    if suffix in (".parquet", ".pq"):
        return _rows_from_parquet(path)
    raise DataError(f"{path}: unsupported file type {suffix!r} (use .csv, .tsv, .jsonl or .parquet)")


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


LabelledT = TypeVar("LabelledT", bound="HasLabel")


class HasLabel(Protocol):
    label: str


def stratify(examples: Sequence[LabelledT], eval_fraction: float, seed: int) -> tuple[list[LabelledT], list[LabelledT]]:
    """Seeded split of any labelled examples (texts, images) that keeps each label's share in both parts."""
    if not 0.0 < eval_fraction < 1.0:
        raise DataError(f"eval fraction must be between 0 and 1, got {eval_fraction}")
    rng = random.Random(seed)
    by_label: dict[str, list[LabelledT]] = {}
    for example in examples:
        by_label.setdefault(example.label, []).append(example)
    train: list[LabelledT] = []
    held: list[LabelledT] = []
    for label in sorted(by_label):
        group = list(by_label[label])
        rng.shuffle(group)
        cut = max(1, round(len(group) * eval_fraction)) if len(group) > 1 else 0
        held.extend(group[:cut])
        train.extend(group[cut:])
    rng.shuffle(train)
    rng.shuffle(held)
    return train, held


def stratified_split(data: LabelledData, eval_fraction: float, seed: int) -> tuple[LabelledData, LabelledData]:
    """Seeded split that keeps each label's share in both parts."""
    train, held = stratify(data.examples, eval_fraction, seed)
    return (LabelledData(f"{data.name} (train split)", train, data.duplicates_dropped, data.notes),
            LabelledData(f"{data.name} (eval split)", held))


def write_jsonl(path: Path, texts: Sequence[str], labels: Sequence[str]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for text, label in zip(texts, labels, strict=True):
            handle.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")
