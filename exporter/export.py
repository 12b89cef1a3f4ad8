"""`tuneship export` of any checkpoint: its task's export (the task table) run by the shared export run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneship.exporter.errors import ExportError
from tuneship.exporter.options import ExportOptions
from tuneship.exporter.run import as_task_options, run_export
from tuneship.exporter.tasks import exported_task, task_exporter
from tuneship.exporter.timing import MEASURED, Timing


def checkpoint_task(checkpoint: Path) -> str:
    """The task a checkpoint was trained for (its manifest's `task`)."""
    from tuneship.trainer import TrainingError, read_checkpoint

    try:
        return str(read_checkpoint(Path(checkpoint)).manifest["task"])
    except TrainingError as error:
        raise ExportError(str(error)) from None


def export_checkpoint(options: ExportOptions, timing: Timing = MEASURED) -> Any:
    """Export any checkpoint by the exporter of its task. `options` are the task's options class, or the common
    ExportOptions (the task's defaults then fill the rest); `timing` gives the speed figures instead of measuring
    them, where a choice must not depend on the machine's mood (tests)."""
    task = checkpoint_task(Path(options.checkpoint))
    export = task_exporter(task)
    options = as_task_options(options, export.options_class, task)
    serving = getattr(options, "serving", None)
    layout = serving.layout if serving is not None else "ensemble"
    if layout not in exported_task(task).layouts:
        raise ExportError(f"{options.checkpoint}: --layout {layout} is for text classifiers; a {task} checkpoint "
                          "is published in its own layout (leave --layout out)")
    return run_export(export.create(options, timing))
