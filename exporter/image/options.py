"""An image classifier's export options. Light on purpose: the command's dispatcher imports it."""

from __future__ import annotations

from dataclasses import dataclass

from tuneship.exporter.options import ClassifierExportOptions

IMAGE_PRECISIONS = ("auto", "fp32", "fp16", "int8")


@dataclass
class ImageExportOptions(ClassifierExportOptions):
    """The classifiers' options as they are: an image export builds fp32, static int8 (calibrated on the
    checkpoint's calibration images) and fp16, and serves them with the same batching settings."""
