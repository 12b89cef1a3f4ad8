"""Fine-tuning methods. Each module builds the trainable model and knows how to save it.

The Trainer-based methods expose `build_model(base, labels, config)` and `save(model, directory)`
(returning manifest fields); `features` has its own fitting path (no gradient steps).
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

METHOD_MODULES = {
    "full": "tuneship.trainer.methods.full",
    "lora": "tuneship.trainer.methods.lora",
    "ptuning": "tuneship.trainer.methods.prompt",
    "prompt-tuning": "tuneship.trainer.methods.prompt",
    "prefix-tuning": "tuneship.trainer.methods.prompt",
    "features": "tuneship.trainer.methods.features",
}


def method_module(name: str) -> ModuleType:
    return import_module(METHOD_MODULES[name])
