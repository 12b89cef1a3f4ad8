"""`--fix`: a cleaned copy written beside the data (never over it): duplicates, near duplicates and conflicting
rows dropped, label issues dropped or relabelled. Built-in data is copied into the output folder instead."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneship.datacheck.findings import Finding
from tuneship.datacheck.options import CheckOptions
from tuneship.datacheck.report import CheckReport


def cleaned_path(data: str, output: Path) -> Path:
    path = Path(data)
    if not path.is_file():  # a built-in set
        return output / f"{data}.clean.csv"
    suffix = path.suffix if path.suffix.lower() in (".csv", ".tsv", ".tab", ".jsonl", ".ndjson") else ".csv"
    return path.with_name(f"{path.stem}.clean{suffix}")


def plan(findings: Sequence[Finding], relabel: bool, threshold: float | None) -> tuple[set[str], dict[str, str]]:
    """The rows ("file:line") to drop and those to relabel, in the training data."""
    drop: set[str] = set()
    relabelled: dict[str, str] = {}
    for finding in findings:
        if finding.kind in ("duplicate", "near_duplicate", "invalid"):
            drop.add(finding.where)
        elif finding.kind == "conflict":  # neither label can be trusted: the row and the one it repeats go
            drop |= {finding.where, finding.other}
        elif finding.kind == "label_issue" and (threshold is None or finding.score < threshold):
            if relabel and finding.suggested:
                relabelled[finding.where] = finding.suggested
            else:
                drop.add(finding.where)
    return drop, {where: label for where, label in relabelled.items() if where not in drop}


@dataclass(frozen=True)
class Cleaned:
    """A cleaned copy and what made it: the rows ("file:line") dropped and those relabelled (to which label)."""

    path: Path
    rows: int
    dropped: list[str]
    relabelled: dict[str, str]

    def describe(self) -> str:
        return f"cleaned copy: {self.path} ({len(self.dropped)} rows dropped, {len(self.relabelled)} relabelled)"


def _relabelled(record: Any, label_column: str, label: str) -> Any:
    """A row with another label; a conversation with another answer (its last message)."""
    if isinstance(record, dict) and isinstance(record.get("messages"), list):
        return {**record, "messages": [*record["messages"][:-1], {**record["messages"][-1], "content": label}]}
    if isinstance(record, dict) and "output" in record and label_column not in record:  # Alpaca
        return {**record, "output": label}
    return {**record, label_column: label}


def write_clean(data: str, target: Path, text_column: str, label_column: str, encoding: str,
                findings: Sequence[Finding], relabel: bool, threshold: float | None) -> Cleaned:
    """The cleaned copy, written aside and renamed."""
    from tuneship.trainer.builtin_data import BUILTIN_DATASETS, load_builtin
    from tuneship.trainer.tables import jsonl_records, read_rows

    drop, relabelled = plan(findings, relabel, threshold)
    if data in BUILTIN_DATASETS:
        records = [(example.source, {text_column: example.text, label_column: example.label})
                   for example in load_builtin(data).examples]
    else:
        path = Path(data)
        # JSONL records are copied as they are (a conversation's messages stay a list); tables row by row.
        rows = jsonl_records(path, encoding) if path.suffix.lower() in (".jsonl", ".ndjson") else \
            read_rows(path, encoding)
        records = [(f"{path}:{line}", record) for line, record in rows]
    kept = []
    for where, record in records:
        if where in drop:
            continue
        if where in relabelled:
            record = _relabelled(record, label_column, relabelled[where])
        kept.append(record)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    columns = list(dict.fromkeys(k for record in kept for k in record)) or [text_column, label_column]
    with temporary.open("w", encoding="utf-8", newline="") as handle:
        if target.suffix in (".jsonl", ".ndjson"):
            for record in kept:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            writer = csv.DictWriter(handle, fieldnames=columns,
                                    delimiter="\t" if target.suffix in (".tsv", ".tab") else ",")
            writer.writeheader()
            writer.writerows(kept)
    os.replace(temporary, target)
    dropped = [where for where, _ in records if where in drop]
    return Cleaned(target, len(kept), dropped, {w: relabelled[w] for w, _ in records if w in relabelled})


def write_cleaned_copy(options: CheckOptions, report: CheckReport) -> Cleaned:
    """--fix: the training data without what the check found in it (findings in the eval file are reported only)."""
    training = options.training
    data = str(training.get("data") or "rotten-tomatoes")
    return write_clean(data, cleaned_path(data, options.output), str(training.get("text_column", "text")),
                       str(training.get("label_column", "label")), str(training.get("encoding", "utf-8")),
                       [f for f in report.findings if f.file != str(training.get("eval_file"))], options.relabel,
                       options.fix_threshold)
