"""Triton Python model: raw image bytes (IMAGE) -> normalised pixels, exactly as the checkpoint was trained.

Installed as `<name>_preprocess/<version>/model.py` next to `image_preprocessing.py`, the trainer's own
preprocessing code (decode, EXIF orientation, resize, centre crop, normalise) copied at export, and
`preprocessing.json` (the checkpoint's sizes, mean and std). Needs `pillow` and `numpy<2` in the Python backend's
environment (the NGC image: `pip install pillow "numpy<2"`).

Each request is checked on its own: an image over `max_image_bytes` or `max_pixels` (config parameters), or bytes
that are not a supported image, get that request an INVALID_ARG error naming the row and the reason; the other
requests of the batch are answered. The limits bound the memory and time one caller can take. The images of
one execute() call are decoded by `preprocess_threads` threads (0: up to 4, one per core).

Quality metric (unless the `quality_metrics` parameter is "false"): `tuneship_images_refused_total{reason}`
(too_large, unreadable).
"""

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
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
        threads = int(parameters.get("preprocess_threads", "0")) or min(4, os.cpu_count() or 1)
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="preprocess")
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

    def _decode(self, data: bytes) -> Any:
        try:
            return preprocess(data, self.spec, self.max_pixels)
        except ImageError as error:
            return error

    def _count(self, reason: str) -> None:
        if reason in self.refused:
            self.refused[reason].increment(1)

    def execute(self, requests: list[Any]) -> list[Any]:
        # Every image of every request in this call, decoded in parallel: Pillow releases the GIL while it
        # decodes and resizes, so the threads use the cores ONNX Runtime is not using at that moment.
        rows: list[list[bytes]] = []
        problems: list[str | None] = []
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().reshape(-1)
            images = [value if isinstance(value, bytes) else bytes(value) for value in values]
            too_large = next((i for i, data in enumerate(images) if len(data) > self.max_image_bytes), None)
            if too_large is not None:
                self._count("too_large")
                problems.append(f"IMAGE row {too_large}: {len(images[too_large])} bytes, over this model's limit "
                                f"of {self.max_image_bytes} (max_image_bytes)")
                images = []
            else:
                problems.append(None)
            rows.append(images)
        flat = [data for images in rows for data in images]
        results = list(self.pool.map(self._decode, flat)) if len(flat) > 1 else [self._decode(d) for d in flat]
        responses = []
        offset = 0
        for images, problem in zip(rows, problems, strict=True):
            mine = results[offset:offset + len(images)]
            offset += len(images)
            failed = next(((row, r) for row, r in enumerate(mine) if isinstance(r, ImageError)), None)
            if failed is not None:
                self._count("too_large" if "megapixel" in str(failed[1]) else "unreadable")
                problem = f"IMAGE row {failed[0]}: {failed[1]}"
            if problem is not None:
                responses.append(pb_utils.InferenceResponse(error=_invalid(problem)))
            else:
                tensor = pb_utils.Tensor(self.output, np.stack(mine))
                responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
        return responses

    def finalize(self) -> None:
        self.pool.shutdown(wait=False)
