"""The training module of a task, from the task table (tuneship/tasks.py): each has `train(config) -> TrainResult`."""

from __future__ import annotations

from types import ModuleType

from tuneship.tasks import UnknownTaskError, load, task
from tuneship.trainer.errors import TrainingError


def task_trainer(name: str) -> ModuleType:
    try:
        module: ModuleType = load(task(name).trainer)
    except UnknownTaskError as error:
        raise TrainingError(str(error)) from None
    return module
