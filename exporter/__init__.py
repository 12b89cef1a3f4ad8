"""Checkpoint -> validated ONNX -> Triton model repository.

Public names load lazily, so importing the package stays cheap (no torch, no tritonclient until used).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tuneship.lazy import lazy_names

_WHERE = {
    "INVARIANCE_TOLERANCE": "tuneship.exporter.selection",
    "VARIANTS_FOLDER": "tuneship.exporter.publishing",
    "VARIANTS_INDEX": "tuneship.exporter.publishing",
    "add_export_arguments": "tuneship.exporter.cli",
    "export_options_from_args": "tuneship.exporter.cli",
    "macro_f1": "tuneship.exporter.quality",
    "read_jsonl": "tuneship.exporter.text.texts",
    "serving_options": "tuneship.exporter.layout",
    "single_model_from_ensemble": "tuneship.exporter.text.publishing",
    "ExportError": "tuneship.exporter.errors",
    "ExportOptions": "tuneship.exporter.options",
    "ClassifierExportOptions": "tuneship.exporter.options",
    "TextExportOptions": "tuneship.exporter.text.options",
    "ImageExportOptions": "tuneship.exporter.image.options",
    "InstructExportOptions": "tuneship.exporter.instruct.options",
    "GenerationServing": "tuneship.exporter.instruct.options",
    "generation_serving": "tuneship.exporter.instruct.publishing",
    "publish_adapter": "tuneship.exporter.instruct.adapter_export",
    "served_greedy": "tuneship.exporter.instruct.measure",
    "export_checkpoint": "tuneship.exporter.export",
    "ServingOptions": "tuneship.exporter.options",
}

__all__ = sorted(_WHERE)

if TYPE_CHECKING:
    from tuneship.exporter.cli import add_export_arguments as add_export_arguments
    from tuneship.exporter.cli import export_options_from_args as export_options_from_args
    from tuneship.exporter.errors import ExportError as ExportError
    from tuneship.exporter.export import export_checkpoint as export_checkpoint
    from tuneship.exporter.image.options import ImageExportOptions as ImageExportOptions
    from tuneship.exporter.instruct.adapter_export import publish_adapter as publish_adapter
    from tuneship.exporter.instruct.measure import served_greedy as served_greedy
    from tuneship.exporter.instruct.options import GenerationServing as GenerationServing
    from tuneship.exporter.instruct.options import InstructExportOptions as InstructExportOptions
    from tuneship.exporter.instruct.publishing import generation_serving as generation_serving
    from tuneship.exporter.layout import serving_options as serving_options
    from tuneship.exporter.options import ClassifierExportOptions as ClassifierExportOptions
    from tuneship.exporter.options import ExportOptions as ExportOptions
    from tuneship.exporter.options import ServingOptions as ServingOptions
    from tuneship.exporter.publishing import VARIANTS_FOLDER as VARIANTS_FOLDER
    from tuneship.exporter.publishing import VARIANTS_INDEX as VARIANTS_INDEX
    from tuneship.exporter.quality import macro_f1 as macro_f1
    from tuneship.exporter.selection import INVARIANCE_TOLERANCE as INVARIANCE_TOLERANCE
    from tuneship.exporter.text.options import TextExportOptions as TextExportOptions
    from tuneship.exporter.text.publishing import single_model_from_ensemble as single_model_from_ensemble
    from tuneship.exporter.text.texts import read_jsonl as read_jsonl

__getattr__ = lazy_names(__name__, _WHERE)
