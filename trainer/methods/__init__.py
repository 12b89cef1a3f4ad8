"""Fine-tuning methods: each module builds the trainable model and says how to save it."""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

METHOD_MODULES = {"full": "trainer.methods.full"}


def method_module(name: str) -> ModuleType:
    return import_module(METHOD_MODULES[name])
