"""`tuneship train --clean`: the check runs first, on the data the training was given, with the base model as its
encoder; training then reads the cleaned copy, and its manifest says what was dropped and where the report is."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tuneship.datacheck.options import DATA_OPTIONS, CheckOptions


def check_folder(output: str) -> Path:
    """The check's report beside the checkpoint (the checkpoint folder is replaced whole when training ends)."""
    path = Path(output)
    return path.with_name(f"{path.name}.data-check")


def clean_for_training(config: Any) -> Any:
    """`config` (a text classifier's training options) reading the cleaned copy, with `data_check` recorded."""
    from tuneship.datacheck.check import check
    from tuneship.datacheck.fix import write_cleaned_copy
    from tuneship.datacheck.report import summary, write

    training = {name: getattr(config, name) for name in DATA_OPTIONS if getattr(config, name, None) is not None}
    options = CheckOptions(output=check_folder(config.output), training=training, encoder=str(config.model),
                           max_length=int(config.max_length), fix=True, seed=int(config.seed))
    report = check(options)
    cleaned = write_cleaned_copy(options, report)
    report.cleaned = [str(cleaned.path)]
    print(summary(report))
    written = write(options.output, report, {k: str(v) for k, v in asdict(options).items()})
    print(cleaned.describe())
    record = {"source": str(training.get("data")), "cleaned": str(cleaned.path), "rows": cleaned.rows,
              "dropped": cleaned.dropped, "relabelled": cleaned.relabelled, "findings": report.counts(),
              "report": str(written[0])}
    return dataclasses.replace(config, data=str(cleaned.path), data_check=record)
