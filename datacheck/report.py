"""What the check shows and leaves: a summary table, and in --output report.json, issues.csv (one row per
finding, with `kind` and `line`) and check.png (label issues by class, the label-quality distribution)."""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from tuneship.datacheck.findings import KINDS, Finding
from tuneship.datacheck.rows import Row


@dataclass
class CheckReport:
    findings: list[Finding]
    classes: dict[str, dict[str, Any]]
    train_rows: int
    eval_rows: int
    out_of_fold_accuracy: float
    flagged_quality: float | None
    cleaned: list[str]
    label_quality: dict[str, float] = field(default_factory=dict)
    """Every scored row's label quality, by "file:line" (repeats are not scored)."""

    @property
    def quality(self) -> list[float]:
        return list(self.label_quality.values())

    def counts(self) -> dict[str, int]:
        found = Counter(f.kind for f in self.findings)
        return {kind: found.get(kind, 0) for kind in KINDS}


def class_table(rows: Sequence[Row], findings: Sequence[Finding]) -> dict[str, dict[str, Any]]:
    counts = Counter(r.label for r in rows)
    issues = Counter(f.given for f in findings if f.kind == "label_issue")
    largest = max(counts.values())
    return {label: {"examples": count, "share": round(count / len(rows), 4),
                    "label_issues": issues.get(label, 0), "issue_rate": round(issues.get(label, 0) / count, 4),
                    "imbalance": round(largest / count, 2)} for label, count in sorted(counts.items())}


def summary(report: CheckReport) -> str:
    lines = [f"{report.train_rows} training rows" + (f", {report.eval_rows} evaluation rows" if report.eval_rows
                                                      else "") +
             (f"; out-of-fold accuracy {report.out_of_fold_accuracy:.3f}" if report.out_of_fold_accuracy ==
              report.out_of_fold_accuracy else ""), f"{'finding':<16}{'rows':>7}  meaning"]
    for kind, count in report.counts().items():
        lines.append(f"{kind:<16}{count:>7}  {KINDS[kind]}")
    lines.append(f"{'class':<16}{'rows':>7}{'share':>8}{'issues':>8}{'rate':>7}")
    for label, row in report.classes.items():
        lines.append(f"{label[:15]:<16}{row['examples']:>7}{row['share']:>8.1%}{row['label_issues']:>8}"
                     f"{row['issue_rate']:>7.1%}")
    worst = max((row["imbalance"] for row in report.classes.values()), default=1.0)
    if worst >= 5:
        lines.append(f"note: the largest class has {worst:g}x the examples of the smallest")
    return "\n".join(lines)


def _atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write(output: Path, report: CheckReport, options: dict[str, Any]) -> list[Path]:
    output.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    names = [f.name for f in fields(Finding)]
    writer = csv.DictWriter(buffer, fieldnames=names)
    writer.writeheader()
    for finding in report.findings:
        writer.writerow(finding.as_dict())
    _atomic(output / "issues.csv", buffer.getvalue())
    payload = {"options": options, "train_rows": report.train_rows, "eval_rows": report.eval_rows,
               "out_of_fold_accuracy": round(report.out_of_fold_accuracy, 4), "counts": report.counts(),
               "classes": report.classes, "cleaned": report.cleaned,
               "label_issues": [f.as_dict() for f in report.findings if f.kind == "label_issue"][:50]}
    _atomic(output / "report.json", json.dumps(payload, indent=2, default=str) + "\n")
    written = [output / "report.json", output / "issues.csv"]
    png = plot(output / "check.png", report)
    return written + ([png] if png else [])


def plot(path: Path, report: CheckReport) -> Path | None:
    from tuneship.png import save_png

    def figure() -> Any:
        import matplotlib.pyplot as plt

        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        labels = list(report.classes)
        left.bar(labels, [100 * report.classes[label]["issue_rate"] for label in labels], color="tab:red")
        left.set_ylabel("label issues (% of the class)")
        left.set_title("label issues by class")
        left.tick_params(axis="x", rotation=30)
        right.hist(np.asarray(report.quality), bins=40, color="tab:blue")
        if report.flagged_quality is not None:
            right.axvline(report.flagged_quality, color="tab:red", linestyle="--", label="flagged below")
            right.legend()
        right.set_xlabel("given label's quality (out-of-fold probability)")
        right.set_ylabel("rows")
        right.set_title("label quality")
        fig.tight_layout()
        return fig

    temporary = path.with_name(f".{path.stem}.{os.getpid()}.png")
    if not save_png(figure, temporary):
        return None
    os.replace(temporary, path)
    return path
