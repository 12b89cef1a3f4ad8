"""Triton Python model: raw image bytes (IMAGE) -> normalised pixels, exactly as the checkpoint was trained.

Installed as `<name>_preprocess/<version>/model.py` next to `image_preprocessing.py`, the trainer's own
preprocessing code (decode, EXIF orientation, resize, centre crop, normalise) copied at export, and
`preprocessing.json` (the checkpoint's sizes, mean and std). Needs `pillow` and `numpy<2` in the Python backend's
environment (the NGC image: `pip install pillow "numpy<2"`).

Each request is checked on its own: an image over `max_image_bytes` or `max_pixels` (config parameters), or bytes
that are not a supported image, get that request an INVALID_ARG error naming the row and the reason; the other
requests of the batch are answered. The limits bound the memory and time one caller can take.

Quality metric (unless the `quality_metrics` parameter is "false"): `tuneship_images_refused_total{reason}`
(too_large, unreadable).
"""

import json
import os
import sys
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from image_preprocessing import ImageError, PreprocessSpec, preprocess


def _invalid(message: str) -> Any:
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    return pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        directory = os.path.join(args["model_repository"], args["model_version"])
        with open(os.path.join(directory, "preprocessing.json"), encoding="utf-8") as handle:
            self.spec = PreprocessSpec.from_dict(json.load(handle))
        self.max_image_bytes = int(parameters.get("max_image_bytes", str(20 << 20)))
        self.max_pixels = int(parameters.get("max_pixels", "40000000"))
        self.output = config["output"][0]["name"]
        self.families: dict[str, Any] = {}
        self.refused: dict[str, Any] = {}
        if parameters.get("quality_metrics", "true") == "true" and hasattr(pb_utils, "MetricFamily"):
            base = {"model": parameters.get("pipeline", args["model_name"].removesuffix("_preprocess")),
                    "version": args["model_version"]}
            family = pb_utils.MetricFamily("tuneship_images_refused_total", "Images refused, by reason",
                                           pb_utils.MetricFamily.COUNTER)
            self.families = {"refused": family}  # the family must outlive its metrics
            self.refused = {reason: family.Metric(labels={**base, "reason": reason})
                            for reason in ("too_large", "unreadable")}

    def _pixels(self, request: Any) -> tuple[Any, str | None]:
        values = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().reshape(-1)
        images = []
        for row, value in enumerate(values):
            data = value if isinstance(value, bytes) else bytes(value)
            if len(data) > self.max_image_bytes:
                self._count("too_large")
                return None, (f"IMAGE row {row}: {len(data)} bytes, over this model's limit of "
                              f"{self.max_image_bytes} (max_image_bytes)")
            try:
                images.append(preprocess(data, self.spec, self.max_pixels))
            except ImageError as error:
                self._count("too_large" if "megapixel" in str(error) else "unreadable")
                return None, f"IMAGE row {row}: {error}"
        return np.stack(images), None

    def _count(self, reason: str) -> None:
        if reason in self.refused:
            self.refused[reason].increment(1)

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            pixels, problem = self._pixels(request)
            if problem is not None:
                responses.append(pb_utils.InferenceResponse(error=_invalid(problem)))
            else:
                responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output, pixels)]))
        return responses
