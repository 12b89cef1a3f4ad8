"""`tuneship data check` of a text classifier's data: read every row, embed the texts once, then label issues,
duplicates, conflicts, leaks and outliers from the same embeddings; report, and with --fix write a cleaned copy."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneship.datacheck.duplicates import leaks, within
from tuneship.datacheck.findings import Finding
from tuneship.datacheck.labels import check_folds, label_scores
from tuneship.datacheck.options import DATA_OPTIONS, CheckOptions, DataCheckError
from tuneship.datacheck.outliers import outliers
from tuneship.datacheck.report import CheckReport, class_table
from tuneship.datacheck.rows import read

if TYPE_CHECKING:
    from tuneship.datacheck.fix import Cleaned


def _check_options(options: CheckOptions) -> None:
    from tuneship.tasks import TASKS, UnknownTaskError, task

    try:
        row = task(options.task)
    except UnknownTaskError as error:
        raise DataCheckError(str(error)) from None
    if row.data_check is None:
        checked = ", ".join(name for name, t in TASKS.items() if t.data_check)
        raise DataCheckError(f"--task {options.task}: tuneship data check reads {checked} data ({row.description} "
                             "is not checked yet)")
    unknown = sorted(set(options.training) - set(DATA_OPTIONS))
    if unknown:
        raise DataCheckError(f"--{unknown[0].replace('_', '-')}: not a data option of the check")
    if not 0.0 <= options.outlier_share < 0.5:
        raise DataCheckError(f"--outlier-share {options.outlier_share}: give a share between 0 and 0.5")
    if not 0.5 <= options.near_threshold <= 1.0:
        raise DataCheckError(f"--near-threshold {options.near_threshold}: give a cosine between 0.5 and 1")
    if options.folds < 2:
        raise DataCheckError("--folds: cross-validation needs at least 2 folds")
    if options.relabel and not options.fix:
        raise DataCheckError("--relabel is what --fix does with label issues: give --fix too")


def check(options: CheckOptions) -> CheckReport:
    """The check of the task's data (the task table's `data_check`), after the options are checked."""
    from tuneship.tasks import load, task

    _check_options(options)
    report: CheckReport = load(str(task(options.task).data_check))(options)
    return report


def check_texts(options: CheckOptions) -> CheckReport:
    """A text classifier's data (the task table's `data_check` of text-classification)."""
    import numpy as np

    from tuneship.datacheck.embeddings import embed

    training = options.training
    data = str(training.get("data") or "rotten-tomatoes")
    text_column, label_column = str(training.get("text_column", "text")), str(training.get("label_column", "label"))
    encoding = str(training.get("encoding", "utf-8"))
    train = read(data, text_column, label_column, encoding, "train")
    evaluation = read(str(training["eval_file"]), text_column, label_column, encoding, "eval") \
        if training.get("eval_file") else []
    check_folds([r.label for r in train], options.folds)  # before the encoder loads: a bad file fails at once
    print(f"checking {len(train)} training rows" + (f" and {len(evaluation)} evaluation rows" if evaluation else "")
          + f" of {data}", flush=True)
    vectors = embed([r.text for r in train + evaluation], options.encoder, options.max_length)
    train_vectors, eval_vectors = vectors[:len(train)], vectors[len(train):]
    findings: list[Finding] = within(train, train_vectors, options.near_threshold)
    if evaluation:
        findings += within(evaluation, eval_vectors, options.near_threshold)
        findings += leaks(train, evaluation, train_vectors, eval_vectors, options.near_threshold)
    # Label issues are scored on the training rows that are not repeats (a duplicate would see itself in a fold).
    repeated = {f.where for f in findings if f.kind in ("duplicate", "near_duplicate", "conflict")}
    unique = [i for i, row in enumerate(train) if row.where not in repeated]
    rows = [train[i] for i in unique]
    classes = sorted({r.label for r in train})
    fine_tuned: Callable[[Any], Any] | None = None
    if options.fine_tune:
        from tuneship.datacheck.finetuned import fine_tuned_out_of_fold

        fine_tuned = functools.partial(
            fine_tuned_out_of_fold, [r.text for r in rows], classes=classes, folds=options.folds, seed=options.seed,
            encoder=options.encoder, max_length=options.max_length, epochs=options.fine_tune_epochs,
            work=options.output / ".folds")

    scores = label_scores(train_vectors[unique], [r.text for r in rows], [r.label for r in rows], classes,
                          options.folds, options.seed, fine_tuned)
    for i in scores.flagged:
        row = rows[i]
        suggested = classes[int(np.argmax(scores.probabilities[i]))]
        findings.append(Finding(kind="label_issue", file=row.file, line=row.line, text=row.text, given=row.label,
                                suggested=suggested if suggested != row.label else "",
                                score=round(float(scores.quality[i]), 4)))
    findings += outliers(rows, train_vectors[unique], options.outlier_share)
    flagged_quality = max((float(scores.quality[i]) for i in scores.flagged), default=None)
    return CheckReport(findings=findings, classes=class_table(train, findings), train_rows=len(train),
                       eval_rows=len(evaluation), out_of_fold_accuracy=scores.out_of_fold_accuracy,
                       flagged_quality=flagged_quality, cleaned=[],
                       label_quality={row.where: float(q) for row, q in zip(rows, scores.quality, strict=True)})


@dataclass
class CheckRun:
    """A check as the command runs it: the report, the cleaned copy (with --fix) and the files written."""

    report: CheckReport
    cleaned: Cleaned | None
    written: list[Path]


def check_and_report(options: CheckOptions) -> CheckRun:
    """Check, write the cleaned copy when asked, print the summary, write the report (`tuneship data check`
    and `tuneship train --clean` alike)."""
    from dataclasses import asdict

    from tuneship.datacheck.fix import write_cleaned_copy
    from tuneship.datacheck.report import summary, write

    report = check(options)
    cleaned = write_cleaned_copy(options, report) if options.fix else None
    if cleaned is not None:
        report.cleaned = [str(cleaned.path)]
        print(cleaned.describe())
    print(summary(report))
    written = write(options.output, report, {k: str(v) for k, v in asdict(options).items()})
    print("wrote " + ", ".join(str(p) for p in written))
    return CheckRun(report, cleaned, written)
