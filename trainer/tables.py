"""Reading labelled tables (CSV / TSV / JSONL / Parquet) and splitting labelled examples, for every task: each
error names the file and the line, so a user can open the file and fix it."""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tuneship.trainer.errors import DataError


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
