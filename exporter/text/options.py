"""A text classifier's export options: the graph optimizations and int8 flavours of transformer encoders, and
TensorRT's profile on a GPU target. Light on purpose: the command's dispatcher imports it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from tuneship.arguments import positive_int
from tuneship.exporter.options import ClassifierExportOptions

INT8_MODES = ("dynamic", "rowwise", "static")


def int8_modes(text: str) -> tuple[str, ...]:
    """--int8-mode's value: modes, comma-separated ('both': the two it had before rowwise, dynamic and static)."""
    modes = ("dynamic", "static") if text == "both" else tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in modes if m not in INT8_MODES]
    if not modes or unknown:
        raise argparse.ArgumentTypeError(f"{text!r}: int8 modes are dynamic, rowwise and static (comma-separated)")
    return modes


@dataclass
class TextExportOptions(ClassifierExportOptions):
    optimize: bool = field(default=True, metadata={
        "help": "apply ONNX Runtime's transformer fusions (--no-optimize: the plain graph)"})
    remove_padding: bool = field(default=True, metadata={
        "help": "CPU: run the fused graph's token-wise operators on real tokens only (exporter/text/"
                "token_packing.py; --keep-padding: do not)", "negative_aliases": ("--keep-padding",)})
    int8_modes: tuple[str, ...] = field(default=("dynamic", "rowwise"), metadata={
        "help": "int8 flavours to build and compare, comma-separated: dynamic (one activation scale per batch), "
                "rowwise (scales per token: batch-invariant), static (QDQ, calibrated; slower and less accurate "
                "on CPU for these encoders, so opt-in); 'both' = dynamic,static", "flag": "--int8-mode",
        "type": int8_modes, "metavar": "MODES"})
    calibration_samples: int = field(default=128, metadata={
        "help": "training texts used to calibrate static int8", "flag": None})
    engine_opt_batch: int | None = field(default=None, metadata={
        "help": "--target gpu with TensorRT: profile batch size to tune for (default: max batch / 2)",
        "type": positive_int})
    engine_opt_sequence: int | None = field(default=None, metadata={
        "help": "--target gpu with TensorRT: profile sequence length to tune for (default: max / 2)",
        "type": positive_int})
    engine_workspace_bytes: int = field(default=1 << 30, metadata={"help": "TensorRT builder workspace",
                                                                    "flag": None})
