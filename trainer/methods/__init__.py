"""Fine-tuning methods. Each module builds the trainable model and knows how to save it.

The Trainer-based methods expose `build_model(base, labels, config)` and `save(model, directory)`
(returning manifest fields); `features` has its own fitting path (no gradient steps).
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

METHOD_MODULES = {
    "full": "trainer.methods.full",
    "lora": "trainer.methods.lora",
    "ptuning": "trainer.methods.prompt",
    "prompt-tuning": "trainer.methods.prompt",
    "prefix-tuning": "trainer.methods.prompt",
    "features": "trainer.methods.features",
}


def method_module(name: str) -> ModuleType:
    return import_module(METHOD_MODULES[name])
