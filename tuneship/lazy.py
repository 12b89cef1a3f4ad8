"""Lazy public names for a stage's __init__ (transformers' pattern): importing a stage stays cheap, and what other
stages use of it is named in one place, its __init__, instead of being reached for in its submodules."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def load(reference: str) -> Any:
    """The object "module:attribute" names, or the module itself when no attribute is given."""
    module, _, attribute = reference.partition(":")
    loaded = import_module(module)
    return getattr(loaded, attribute) if attribute else loaded


def lazy_names(package: str, names: Mapping[str, str],
               modules: Mapping[str, str] | None = None) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: each name of `names` is the attribute of that name in the module it
    maps to; each of `modules` is a module itself. Imported on first use."""
    whole = dict(modules or {})

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(import_module(names[name]), name)
        if name in whole:
            return import_module(whole[name])
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
