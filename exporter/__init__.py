"""Checkpoint -> validated ONNX -> Triton model repository.

Public names load lazily, so importing the package stays cheap (no torch, no tritonclient until used).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["ExportError", "ExportOptions", "ServingOptions", "export_checkpoint", "repository_lock"]

_WHERE = {
    "ExportError": "tuneship.exporter.errors",
    "ExportOptions": "tuneship.exporter.export",
    "export_checkpoint": "tuneship.exporter.export",
    "ServingOptions": "tuneship.exporter.model_configs",
    "repository_lock": "tuneship.exporter.locking",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'tuneship.exporter' has no attribute {name!r}")
