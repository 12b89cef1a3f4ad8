"""The exporter of a task, from the task table (tuneship/tasks.py), as Optimum's TasksManager maps a task to its
export: a new task adds a row there and its own modules, not branches in the export run."""

from __future__ import annotations

from typing import Any

from tuneship.exporter.errors import ExportError
from tuneship.tasks import Task, UnknownTaskError, load, task


def exported_task(name: str) -> Task:
    try:
        return task(name)
    except UnknownTaskError as error:
        raise ExportError(f"no exporter for it: {error}") from None


def task_exporter(name: str) -> Any:
    """The task's TaskExport class (exporter/run.py), its options class as `options_class`."""
    return load(exported_task(name).exporter)


def task_export_options(name: str) -> Any:
    """The task's export options class, without importing its export (the CLI builds options from it)."""
    return load(exported_task(name).export_options)
