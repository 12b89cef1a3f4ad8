"""One training module per task, found by the manifest's `task`: adding a task adds a module here, it does not
grow if/else chains in the training code (the way transformers maps a task to its pipeline class).

Each module has `train(config) -> TrainResult`.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from tuneship.trainer.errors import TrainingError

TASK_TRAINERS = {
    "text-classification": "tuneship.trainer.training",
    "instruct": "tuneship.trainer.instruct.training",
    "image-classification": "tuneship.trainer.image.training",
}


def task_trainer(task: str) -> ModuleType:
    if task not in TASK_TRAINERS:
        raise TrainingError(f"unknown task {task!r}; tasks: {', '.join(TASK_TRAINERS)}")
    return import_module(TASK_TRAINERS[task])
