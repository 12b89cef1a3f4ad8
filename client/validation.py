"""Check inputs against a model's metadata before anything is sent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tuneship.client.errors import InvalidInputError

# Triton datatype -> numpy kinds/dtypes that may be sent for it.
_NUMPY_FOR = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
}


def triton_datatype(array: np.ndarray[Any, Any]) -> str:
    if array.dtype.kind in ("U", "S", "O"):
        return "BYTES"
    for name, dtype in _NUMPY_FOR.items():
        if array.dtype == dtype:
            return name
    raise InvalidInputError(f"numpy dtype {array.dtype} has no Triton datatype")


def check_inputs(model: str, metadata: Mapping[str, Any], inputs: Mapping[str, np.ndarray[Any, Any]],
                 max_batch_size: int) -> None:
    """Raise InvalidInputError naming the input and what the model expects."""
    expected = {spec["name"]: spec for spec in metadata.get("inputs", [])}
    unknown = sorted(set(inputs) - set(expected))
    if unknown:
        raise InvalidInputError(f"model {model!r} has no input {unknown[0]!r} (inputs: {', '.join(sorted(expected))})")
    missing = sorted(set(expected) - set(inputs))
    if missing:
        raise InvalidInputError(f"model {model!r} needs input {missing[0]!r}, which was not given")
    for name, array in inputs.items():
        spec = expected[name]
        datatype = triton_datatype(array)
        if datatype != spec["datatype"]:
            raise InvalidInputError(
                f"input {name!r} of model {model!r} must be {spec['datatype']}, got {datatype} ({array.dtype})")
        shape = [int(d) for d in spec["shape"]]
        if len(shape) != array.ndim:
            raise InvalidInputError(
                f"input {name!r} of model {model!r} must have shape {shape} ({len(shape)} dimensions), "
                f"got {list(array.shape)}")
        for axis, (want, got) in enumerate(zip(shape, array.shape, strict=True)):
            if want != -1 and want != got:
                raise InvalidInputError(
                    f"input {name!r} of model {model!r}: dimension {axis} must be {want}, got {got} "
                    f"(expected shape {shape}, got {list(array.shape)})")
        if max_batch_size > 0 and array.shape[0] > max_batch_size:
            raise InvalidInputError(
                f"input {name!r} of model {model!r}: batch of {array.shape[0]} is over the model's "
                f"max_batch_size {max_batch_size}; send smaller batches")
