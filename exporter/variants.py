"""ONNX variants of one exported model: graph-optimized fp32, int8 (dynamic and static QDQ), fp16.

All of them come from ONNX Runtime's own tooling (transformer optimizer, quantization, float16
converter); this module only chooses the options that suit text encoders.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Ops that overflow or lose too much in fp16 for these encoders; kept fp32 (ORT inserts casts).
FP16_BLOCKED_OPS = ["LayerNormalization", "SkipLayerNormalization", "Softmax", "ReduceMean", "Pow", "Sqrt", "Erf"]


@dataclass
class Variant:
    name: str
    path: Path
    precision: str  # fp32, fp16, int8
    description: str
    fused_operators: dict[str, int] = field(default_factory=dict)


def optimize_transformer(source: Path, target: Path, model_type: str, num_heads: int, hidden_size: int,
                         use_gpu: bool = False) -> Path:
    """Attention / LayerNorm / GELU fusions from onnxruntime.transformers.optimizer."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(source), model_type=model_type, num_heads=num_heads, hidden_size=hidden_size,
                               opt_level=1 if use_gpu else 2, use_gpu=use_gpu)
    optimized.save_model_to_file(str(target))
    return target


def fused_operators(path: Path) -> dict[str, int]:
    """How many fused transformer operators the graph has (to report what the optimizer did)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    counts: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "EmbedLayerNormalization",
                            "BiasGelu", "FastGelu", "Gelu", "LayerNormalization"):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def quantize_int8_dynamic(source: Path, target: Path, per_channel: bool) -> Path:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Fused contrib ops (Attention, SkipLayerNormalization) defeat ONNX shape inference; their outputs
    # are float, which is what DefaultTensorType tells the quantizer.
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=per_channel,
                     op_types_to_quantize=["MatMul", "Attention"],
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return target


class _TextCalibration:
    """Feeds tokenized training texts to the static quantizer's calibration run."""

    def __init__(self, batches: Sequence[dict[str, np.ndarray[Any, Any]]]) -> None:
        self._iterator: Iterator[dict[str, np.ndarray[Any, Any]]] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray[Any, Any]] | None:
        return next(self._iterator, None)

    def rewind(self) -> None:  # pragma: no cover - part of the CalibrationDataReader protocol
        pass


def quantize_int8_static(source: Path, target: Path, calibration: Sequence[dict[str, np.ndarray[Any, Any]]],
                         per_channel: bool) -> Path:
    """QDQ int8 with activation ranges calibrated on real texts (MinMax)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = target.with_name(target.stem + ".pre.onnx")
    try:
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    except Exception:  # pre-processing is an optimisation; quantize the plain graph if it fails
        shutil.copy2(source, prepared)

    class Reader(_TextCalibration, CalibrationDataReader):  # type: ignore[misc]
        pass

    quantize_static(str(prepared), str(target), Reader(calibration), quant_format=QuantFormat.QDQ,
                    per_channel=per_channel, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=["MatMul", "Gemm"],
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
    prepared.unlink(missing_ok=True)
    return target


def convert_fp16(source: Path, target: Path, fused: bool) -> Path:
    """fp16 weights and compute with fp32 inputs/outputs.

    A fused graph goes through the optimizer's own converter (its fused ops accumulate in fp32);
    an unfused one keeps the overflow-prone ops in fp32.
    """
    import onnx

    if fused:
        from onnxruntime.transformers.onnx_model import OnnxModel

        model = OnnxModel(onnx.load(str(source)))
        model.convert_float_to_float16(keep_io_types=True)
        model.save_model_to_file(str(target))
        return target
    from onnxruntime.transformers.float16 import convert_float_to_float16

    converted = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True, op_block_list=FP16_BLOCKED_OPS)
    onnx.save(converted, str(target))
    return target
