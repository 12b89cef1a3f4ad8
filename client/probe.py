"""A real request for any model, built from its metadata: what liveness checks send.

Triton's health endpoints say whether the server process answers, not whether a model can (a model whose
Python stub died stays "ready" while every request fails), so a liveness check has to run an inference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_NUMPY = {"INT64": np.int64, "INT32": np.int32, "INT16": np.int16, "INT8": np.int8, "UINT8": np.uint8,
          "FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "BOOL": np.bool_}


def probe_inputs(metadata: dict[str, Any], text: str = "a probe of the model") -> dict[str, np.ndarray[Any, Any]]:
    """One row per input, one element on every variable axis: zeros, or `text` for string inputs."""
    inputs: dict[str, np.ndarray[Any, Any]] = {}
    for spec in metadata.get("inputs", []):
        shape = [1 if int(d) < 0 else int(d) for d in spec.get("shape", [])] or [1]
        datatype = str(spec.get("datatype", "FP32"))
        if datatype == "BYTES":
            inputs[spec["name"]] = np.full(shape, text.encode("utf-8"), dtype=np.object_)
        else:
            inputs[spec["name"]] = np.zeros(shape, dtype=_NUMPY.get(datatype, np.float32))
    return inputs
