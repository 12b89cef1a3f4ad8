"""Python-based Triton backend serving `platform: "onnxruntime_onnx"` models with the onnxruntime package.

Copied into `<backend-dir>/onnxruntime/model.py` by the embedded server. It mirrors the native
ONNX Runtime backend's config knobs so the same config.pbtxt works here and in the NGC image.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import triton_python_backend_utils as pb_utils

from tuneship.deploy.onnxruntime_bridge.input_limits import InputLimits, check_request, read_limits

# Same mapping as the native backend (onnxruntime_backend/src/onnxruntime.cc): -1 basic,
# 1 extended, anything else (the default 0 included) all optimizations.
_GRAPH_LEVELS = {-1: "ORT_ENABLE_BASIC", 1: "ORT_ENABLE_EXTENDED"}

Array = npt.NDArray[Any]

_TRITON_TO_NUMPY = {
    "TYPE_BOOL": np.bool_,
    "TYPE_UINT8": np.uint8,
    "TYPE_INT8": np.int8,
    "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
}


def _check_numpy() -> None:
    # With numpy 2.x in the stub's environment, Triton answers with empty tensors and no error.
    major = int(np.__version__.split(".")[0])
    if major >= 2:
        raise RuntimeError(
            f"numpy {np.__version__} is installed in the serving environment ({os.path.dirname(np.__file__)}); "
            "the Triton Python backend stub needs numpy < 2 (with 2.x it returns empty outputs silently). "
            "Run: pip install 'numpy<2'"
        )


def _parameter(config: dict[str, Any], key: str) -> str | None:
    value = config.get("parameters", {}).get(key)
    if value is None:
        return None
    return str(value.get("string_value", "")).strip() or None


def session_options_from_config(config: dict[str, Any]) -> tuple[Any, list[str]]:
    """Build onnxruntime SessionOptions from the config's parameters and optimization block."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    notes: list[str] = []
    for key, attribute in (("intra_op_thread_count", "intra_op_num_threads"),
                           ("inter_op_thread_count", "inter_op_num_threads")):
        raw = _parameter(config, key)
        if raw is not None:
            try:
                setattr(options, attribute, int(raw))
            except ValueError as error:
                raise ValueError(f"parameter {key}={raw!r} is not an integer") from error
            notes.append(f"{key}={raw}")
    level = int(config.get("optimization", {}).get("graph", {}).get("level", 0))
    level_name = _GRAPH_LEVELS.get(level, "ORT_ENABLE_ALL")
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level_name)
    notes.append(f"graph level {level} -> {level_name}")
    return options, notes


def providers_from_config(config: dict[str, Any], instance_kind: str) -> tuple[list[str], list[str]]:
    """Execution providers to use; GPU accelerators are ignored (and reported) without a GPU."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    accelerators = config.get("optimization", {}).get("execution_accelerators", {})
    requested = [str(a.get("name", "")) for a in accelerators.get("gpu_execution_accelerator", [])]
    notes: list[str] = []
    providers: list[str] = []
    gpu_ok = instance_kind == "GPU" and "CUDAExecutionProvider" in available
    for name in requested:
        if name == "tensorrt" and gpu_ok and "TensorrtExecutionProvider" in available:
            providers.append("TensorrtExecutionProvider")
        else:
            notes.append(f"ignoring GPU execution accelerator {name!r}: no GPU/TensorRT provider here")
    if gpu_ok:
        providers.append("CUDAExecutionProvider")
    providers.append("CPUExecutionProvider")
    return providers, notes


def _error(message: str, invalid: bool = False) -> Any:
    """A TritonError; INVALID_ARG (the client's InvalidInputError) for requests that do not fit the model."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None) if invalid else None
    return pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)


def _read_limits(path: str, input_names: list[str]) -> InputLimits:
    try:
        return read_limits(path, input_names)
    except ImportError:  # the onnx package is missing: rely on the run-time fallback (one request at a time)
        pb_utils.Logger.log_warn(f"onnxruntime bridge: cannot read input limits of {path} (pip install onnx)")
        return InputLimits()


class TritonPythonModel:
    """Runs every request of one execute() call as one ONNX Runtime batch."""

    def initialize(self, args: dict[str, str]) -> None:
        _check_numpy()
        import onnxruntime as ort

        self.config = json.loads(args["model_config"])
        self.name = args["model_name"]
        filename = self.config.get("default_model_filename") or "model.onnx"
        path = os.path.join(args["model_repository"], args["model_version"], filename)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"model {self.name!r}: ONNX file {path} does not exist")
        options, notes = session_options_from_config(self.config)
        providers, provider_notes = providers_from_config(self.config, args.get("model_instance_kind", "CPU"))
        logger = pb_utils.Logger
        for note in notes + provider_notes:
            logger.log_info(f"onnxruntime bridge {self.name}: {note}")
        self.session = ort.InferenceSession(path, sess_options=options, providers=providers)
        session_inputs = {i.name for i in self.session.get_inputs()}
        self.input_names = [i["name"] for i in self.config.get("input", [])]
        missing = [n for n in self.input_names if n not in session_inputs]
        if missing:
            raise ValueError(
                f"model {self.name!r}: config inputs {missing} are not inputs of {filename} "
                f"(the ONNX model has {sorted(session_inputs)})"
            )
        self.outputs = [(o["name"], _TRITON_TO_NUMPY.get(o["data_type"])) for o in self.config.get("output", [])]
        self.batched = int(self.config.get("max_batch_size", 0)) > 0
        self.limits = _read_limits(path, self.input_names)
        logger.log_info(f"onnxruntime bridge {self.name}: input limits {self.limits.describe()}")

    def execute(self, requests: Sequence[Any]) -> list[Any]:
        responses: list[Any] = [None] * len(requests)
        groups: dict[tuple[tuple[int, ...], ...], list[int]] = {}
        arrays: list[dict[str, Array]] = []
        for index, request in enumerate(requests):
            feeds: dict[str, Array] = {}
            for name in self.input_names:
                tensor = pb_utils.get_input_tensor_by_name(request, name)
                if tensor is None:
                    feeds = {}
                    responses[index] = pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(f"input {name!r} is missing"))
                    break
                feeds[name] = tensor.as_numpy()
            if feeds:
                # Checked alone, before it can share a batch: a bad id must fail its own request only.
                problem = check_request(feeds, self.limits, self.batched)
                if problem is not None:
                    feeds = {}
                    responses[index] = pb_utils.InferenceResponse(error=_error(problem, invalid=True))
            arrays.append(feeds)
            if feeds:
                # Only tensors of the same trailing shape can be concatenated into one batch.
                key = tuple(tuple(feeds[n].shape[1:]) for n in self.input_names) if self.batched else (
                    (index,),)
                groups.setdefault(key, []).append(index)
        for members in groups.values():
            self._run_group(members, arrays, responses)
        return responses

    def _run_group(self, members: list[int], arrays: list[dict[str, Array]], responses: list[Any]) -> None:
        try:
            if self.batched:
                feeds = {n: np.concatenate([arrays[i][n] for i in members], axis=0) for n in self.input_names}
            else:
                feeds = arrays[members[0]]
            results = self.session.run([name for name, _ in self.outputs], feeds)
        except Exception as error:
            if len(members) > 1:
                # Whatever the checks missed: run the requests one by one, so only the faulty one fails.
                for i in members:
                    self._run_group([i], arrays, responses)
                return
            responses[members[0]] = pb_utils.InferenceResponse(error=_error(str(error)))
            return
        offset = 0
        for i in members:
            size = arrays[i][self.input_names[0]].shape[0] if self.batched else 0
            tensors = []
            for (name, dtype), value in zip(self.outputs, results, strict=True):
                part = value[offset:offset + size] if self.batched else value
                if dtype is not None and part.dtype != dtype:
                    part = part.astype(dtype)
                tensors.append(pb_utils.Tensor(name, np.ascontiguousarray(part)))
            offset += size
            responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)

    def finalize(self) -> None:
        self.session = None
