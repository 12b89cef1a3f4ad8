"""The exporter of a task, from the task table (tuneship/tasks.py), as Optimum's TasksManager maps a task to its
export: a new task adds a row there and its own modules, not branches in the export run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tuneship.exporter.errors import ExportError
from tuneship.tasks import Task, UnknownTaskError, load, task


def exported_task(name: str) -> Task:
    try:
        return task(name)
    except UnknownTaskError as error:
        raise ExportError(f"no exporter for it: {error}") from None


def task_exporter(name: str) -> Callable[[Any], Any]:
    exporter: Callable[[Any], Any] = load(exported_task(name).exporter)
    return exporter
