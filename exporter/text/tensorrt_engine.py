"""Standalone TensorRT engines (Triton's `tensorrt_plan`) for `--target gpu`.

Built only where the `tensorrt` package and a CUDA GPU are both present; elsewhere the exporter writes the
ONNX model with ONNX Runtime's TensorRT accelerator configured instead (model_configs.add_tensorrt_accelerator)
and says why. An engine is tied to the GPU model and TensorRT version it was built with, so the report
records both.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneship.exporter.errors import ExportError

PRECISIONS = ("FP16", "INT8", "FP32")


@dataclass(frozen=True)
class ShapeProfile:
    """One TensorRT optimization profile for the (batch, sequence) token inputs."""

    min_batch: int
    opt_batch: int
    max_batch: int
    min_sequence: int
    opt_sequence: int
    max_sequence: int

    def __post_init__(self) -> None:
        if not (1 <= self.min_batch <= self.opt_batch <= self.max_batch):
            raise ExportError(f"TensorRT profile: need 1 <= min <= opt <= max batch, got "
                              f"{self.min_batch}/{self.opt_batch}/{self.max_batch}")
        if not (1 <= self.min_sequence <= self.opt_sequence <= self.max_sequence):
            raise ExportError(f"TensorRT profile: need 1 <= min <= opt <= max sequence, got "
                              f"{self.min_sequence}/{self.opt_sequence}/{self.max_sequence}")

    def shapes(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        return ((self.min_batch, self.min_sequence), (self.opt_batch, self.opt_sequence),
                (self.max_batch, self.max_sequence))

    def admits(self, batch: int, sequence: int) -> bool:
        return self.min_batch <= batch <= self.max_batch and self.min_sequence <= sequence <= self.max_sequence


def default_profile(max_batch_size: int, max_length: int, opt_batch: int | None = None,
                    opt_sequence: int | None = None) -> ShapeProfile:
    """Batches up to Triton's max_batch_size, sequences up to the checkpoint's maximum length.

    The optimum (what TensorRT tunes kernels for) defaults to half the maximum batch and half the maximum
    length: Triton's tokenizer pads each batch to its longest text, so typical batches are well below both.
    """
    return ShapeProfile(min_batch=1, opt_batch=opt_batch or max(1, max_batch_size // 2), max_batch=max_batch_size,
                        min_sequence=1, opt_sequence=opt_sequence or max(1, max_length // 2),
                        max_sequence=max_length)


def tensorrt_unavailable() -> str | None:
    """Why no engine can be built here, or None when TensorRT and a CUDA GPU are both present."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the tensorrt package is not installed"
    try:
        import torch
    except ImportError:
        return "torch is needed to run the TensorRT engine for validation"
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    return None


def _logger() -> Any:
    import tensorrt as trt

    return trt.Logger(trt.Logger.WARNING)


def build_engine(onnx_path: Path, plan_path: Path, input_names: Sequence[str], profile: ShapeProfile,
                 precision: str = "FP16", workspace_bytes: int = 1 << 30) -> dict[str, str]:
    """Parse the ONNX model, build a serialized engine with one optimization profile, write it atomically.

    INT8 expects a QDQ graph (explicit quantization, the exporter's int8-static variant): TensorRT takes the
    scales from its Q/DQ nodes, so no calibrator runs here. Returns what the engine is tied to.
    """
    import tensorrt as trt

    if precision not in PRECISIONS:
        raise ExportError(f"unknown TensorRT precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    logger = _logger()
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if precision in ("FP16", "INT8"):
        config.set_flag(trt.BuilderFlag.FP16)  # INT8 engines keep fp16 for what is not quantized
    if precision == "INT8":
        config.set_flag(trt.BuilderFlag.INT8)
    if precision == "FP32":  # TF32 is on by default on Ampere and later; fp32 must match PyTorch's fp32
        config.clear_flag(trt.BuilderFlag.TF32)
    shape_profile = builder.create_optimization_profile()
    minimum, optimum, maximum = profile.shapes()
    for name in input_names:
        shape_profile.set_shape(name, minimum, optimum, maximum)
    config.add_optimization_profile(shape_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build a {precision} engine from {onnx_path.name} "
                          "(its log above says why)")
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".engine-", dir=plan_path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(memoryview(serialized))
        os.replace(temporary, plan_path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    import torch

    return {"tensorrt": str(trt.__version__), "gpu": torch.cuda.get_device_name(0), "precision": precision}


class EngineSession:
    """Runs a serialized engine behind ONNX Runtime's `run(output_names, feeds)` call, so the exporter's
    validation, accuracy gate and latency measurement treat it like any other variant."""

    def __init__(self, plan_path: Path, profile: ShapeProfile) -> None:
        import tensorrt as trt

        self._profile = profile
        self._runtime = trt.Runtime(_logger())
        self._engine = self._runtime.deserialize_cuda_engine(plan_path.read_bytes())
        if self._engine is None:
            raise ExportError(f"TensorRT could not load {plan_path} (built for another GPU or TensorRT version?)")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._outputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    def run(self, output_names: Sequence[str] | None, feeds: dict[str, Any]) -> list[Any]:
        import torch

        batch, sequence = next(iter(feeds.values())).shape
        if not self._profile.admits(batch, sequence):
            raise ExportError(f"batch {batch} x sequence {sequence} is outside the engine's profile {self._profile}")
        inputs = {name: torch.from_numpy(array).cuda() for name, array in feeds.items()}
        for name, tensor in inputs.items():
            self._context.set_input_shape(name, tuple(tensor.shape))
            self._context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for name in self._outputs:
            outputs[name] = torch.empty(tuple(self._context.get_tensor_shape(name)), dtype=torch.float32,
                                        device="cuda")
            self._context.set_tensor_address(name, outputs[name].data_ptr())
        stream = torch.cuda.current_stream()
        if not self._context.execute_async_v3(stream.cuda_stream):
            raise ExportError("TensorRT execution failed")
        stream.synchronize()
        return [outputs[name].cpu().numpy() for name in (output_names or self._outputs)]
