"""A real request for any model, built from its metadata: what liveness checks send.

Triton's health endpoints say whether the server process answers, not whether a model can (a model whose
Python stub died stays "ready" while every request fails), so a liveness check has to run an inference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_NUMPY = {"INT64": np.int64, "INT32": np.int32, "INT16": np.int16, "INT8": np.int8, "UINT8": np.uint8,
          "FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "BOOL": np.bool_}


# Request parameter that marks a liveness probe: the postprocess model and the generator answer it but leave it out
# of their metrics, so probes every few seconds do not count as predictions or answers.
PROBE_PARAMETER = "tuneship_probe"


def probe_inputs(metadata: dict[str, Any], text: str = "a probe of the model") -> dict[str, np.ndarray[Any, Any]]:
    """A classifier of a tuneship task: one item (`text`, or the task's probe item: a small valid image) as its
    task's request. Any other model: one row per input, one element on every variable axis, zeros or `text`."""
    from tuneship.tasks import load, task_of_metadata

    served = task_of_metadata(metadata)
    if served is not None and served.classifies:
        item = load(served.probe_item) if served.probe_item else text
        inputs: dict[str, np.ndarray[Any, Any]] = load(served.encoder)([item])
        return inputs
    inputs = {}
    for spec in metadata.get("inputs", []):
        shape = [1 if int(d) < 0 else int(d) for d in spec.get("shape", [])] or [1]
        datatype = str(spec.get("datatype", "FP32"))
        if datatype == "BYTES":
            inputs[spec["name"]] = np.full(shape, text.encode("utf-8"), dtype=np.object_)
        else:
            inputs[spec["name"]] = np.zeros(shape, dtype=_NUMPY.get(datatype, np.float32))
    return inputs


def generation_probe(metadata: dict[str, Any], text: str) -> dict[str, np.ndarray[Any, Any]] | None:
    """For a model whose task answers over the stream (a generator): one token for `text`; None for others."""
    from tuneship.tasks import task_of_metadata

    served = task_of_metadata(metadata)
    if served is None or not served.generates:
        return None
    return {"text_input": np.array([text.encode("utf-8")], dtype=np.object_),
            "max_tokens": np.array([1], dtype=np.int32)}


def stream_once(client: Any, model: str, inputs: dict[str, np.ndarray[Any, Any]], timeout_s: float) -> Any:
    """One probe request over gRPC's bidirectional stream (decoupled models take no other) through `client`
    (a TritonClient), marked as a probe: its final response, an InferResult.

    Raises the typed error the stream reported, or DeadlineExceededError when nothing final came in time.
    """
    stream = client.stream_infer(model, inputs, timeout_s=timeout_s, validate=False,
                                 parameters={PROBE_PARAMETER: True})
    for result in stream:
        if result.final:
            return result
    raise RuntimeError(f"the stream from {model!r} ended without a final response")  # stream_infer raises first
