"""Checkpoint -> validated ONNX -> Triton model repository."""

from exporter.errors import ExportError
from exporter.model_configs import ServingOptions

__all__ = ["ExportError", "ExportOptions", "ServingOptions", "export_checkpoint"]


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    # The export pipeline imports numpy/torch; load it only when asked for.
    if name in ("ExportOptions", "export_checkpoint"):
        from exporter import export

        return getattr(export, name)
    raise AttributeError(name)
