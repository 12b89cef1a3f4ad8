"""Fine-tuning methods. Each module builds the trainable model and knows how to save it.

The Trainer-based methods expose `build_model(base, labels, config)` and `save(model, directory)`
(returning manifest fields); `features` has its own fitting path (no gradient steps).
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

METHOD_MODULES = {
    "full": "tuneship.trainer.text.methods.full",
    "lora": "tuneship.trainer.text.methods.lora",
    "ptuning": "tuneship.trainer.text.methods.prompt",
    "prompt-tuning": "tuneship.trainer.text.methods.prompt",
    "prefix-tuning": "tuneship.trainer.text.methods.prompt",
    "features": "tuneship.trainer.text.methods.features",
}


def method_module(name: str) -> ModuleType:
    return import_module(METHOD_MODULES[name])
