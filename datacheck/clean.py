"""`tuneship train --clean`: the check runs first, on the data the training was given, with the base model as its
encoder; training then reads the cleaned copy, and its manifest says what was dropped and where the report is."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from tuneship.datacheck.options import DATA_OPTIONS, CheckOptions


def check_folder(output: str) -> Path:
    """The check's report beside the checkpoint (the checkpoint folder is replaced whole when training ends)."""
    path = Path(output)
    return path.with_name(f"{path.name}.data-check")


def clean_for_training(config: Any) -> Any:
    """`config` (a text classifier's training options) reading the cleaned copy, with `data_check` recorded."""
    from tuneship.datacheck.check import check_and_report

    training = {name: getattr(config, name) for name in DATA_OPTIONS if getattr(config, name, None) is not None}
    options = CheckOptions(output=check_folder(config.output), training=training, encoder=str(config.model),
                           max_length=int(config.max_length), fix=True, seed=int(config.seed))
    run = check_and_report(options)
    assert run.cleaned is not None  # fix=True
    record = {"source": str(training.get("data")), "cleaned": str(run.cleaned.path), "rows": run.cleaned.rows,
              "dropped": run.cleaned.dropped, "relabelled": run.cleaned.relabelled,
              "findings": run.report.counts(), "report": str(run.written[0])}
    return dataclasses.replace(config, data=str(run.cleaned.path), data_check=record)
