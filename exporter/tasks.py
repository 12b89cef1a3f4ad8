"""One exporter per task, found by the checkpoint manifest's `task` (as Optimum's TasksManager maps a task to its
export): a new task adds an entry here and its own modules, not branches in the export run."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any

from tuneship.exporter.errors import ExportError

TASK_EXPORTERS = {
    "text-classification": ("tuneship.exporter.export", "export_text_classifier"),
    "instruct": ("tuneship.exporter.instruct.export", "export_instruct"),
    "image-classification": ("tuneship.exporter.image.export", "export_image_classifier"),
}


def task_exporter(task: str) -> Callable[[Any], Any]:
    if task not in TASK_EXPORTERS:
        raise ExportError(f"no exporter for task {task!r}; tasks: {', '.join(TASK_EXPORTERS)}")
    module, function = TASK_EXPORTERS[task]
    exporter: Callable[[Any], Any] = getattr(import_module(module), function)
    return exporter
