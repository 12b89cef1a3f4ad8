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


# Triton's ONNX Runtime backend graph levels (config.pbtxt `optimization { graph { level } }`).
GRAPH_LEVEL_DEFAULT = 0  # all of ONNX Runtime's optimizations at load time
GRAPH_LEVEL_BASIC = -1  # basic only: for graphs whose extended optimizations were applied at export


@dataclass
class Variant:
    name: str
    path: Path
    precision: str  # fp32, fp16, int8
    description: str
    fused_operators: dict[str, int] = field(default_factory=dict)
    # The level it must be served (and measured) with: a pre-optimized graph asks for basic, so ONNX Runtime
    # does not fuse again what the export deliberately left unfused.
    graph_level: int = GRAPH_LEVEL_DEFAULT
    format: str = "onnx"  # or "tensorrt_plan": a serialized engine (exporter/text/tensorrt_engine.py)
    profile: Any = None  # the engine's ShapeProfile


# ONNX Runtime's CPU SkipLayerNormalization kernel is slower than the plain Add + LayerNormalization it
# replaces (ORT 1.32 on this 2-core CPU: 216 vs 257 ms for int8 MiniLM at batch 32, BENCHMARKS.md), so CPU
# graphs keep the residual Add and LayerNormalization apart, offline and at load time.
CPU_DISABLED_FUSIONS = ("SkipLayerNormFusion",)


def optimize_transformer(source: Path, target: Path, model_type: str, num_heads: int, hidden_size: int,
                         use_gpu: bool = False) -> Path:
    """Attention / LayerNorm / GELU fusions from onnxruntime.transformers.optimizer."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    fusions = FusionOptions(model_type)
    if not use_gpu:  # see CPU_DISABLED_FUSIONS; CUDA's SkipLayerNormalization is the fast path there
        fusions.enable_skip_layer_norm = False
        fusions.enable_bias_skip_layer_norm = False
    optimized = optimize_model(str(source), model_type=model_type, num_heads=num_heads, hidden_size=hidden_size,
                               optimization_options=fusions, opt_level=1 if use_gpu else 0, use_gpu=use_gpu)
    optimized.save_model_to_file(str(target))
    return target


def ort_offline_optimize(source: Path, target: Path, threads: int = 0) -> Path:
    """Apply ONNX Runtime's extended CPU optimizations now and save the result (ORT's "offline mode").

    The quantized MatMul fusions (DynamicQuantizeMatMul, MatMulIntegerToFloat) are extended-level, so they
    are baked in here; the served config then asks for basic level (GRAPH_LEVEL_BASIC), which keeps
    ONNX Runtime from re-creating the fusions in CPU_DISABLED_FUSIONS. Extended (not layout) optimizations
    are CPU-EP specific but not CPU-model specific, so the graph stays portable across x86 machines.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.intra_op_num_threads = threads
    options.optimized_model_filepath = str(target)
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"],
                         disabled_optimizers=list(CPU_DISABLED_FUSIONS))
    return target


def session_options(graph_level: int, threads: int = 0) -> Any:
    """SessionOptions matching how Triton's ONNX Runtime backend reads `graph_level` (measure as served).

    The same mapping as deploy/onnxruntime_bridge/model.py's, which cannot be imported here (it runs inside
    Triton's stub); tests/test_bridge.py checks that the two agree.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    levels = {GRAPH_LEVEL_BASIC: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              1: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}
    options.graph_optimization_level = levels.get(graph_level, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    return options


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


class _Feeds:
    """Feeds ready inputs (tokenized texts, pixels) to the static quantizer's calibration run."""

    def __init__(self, batches: Sequence[dict[str, np.ndarray[Any, Any]]]) -> None:
        self._iterator: Iterator[dict[str, np.ndarray[Any, Any]]] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray[Any, Any]] | None:
        return next(self._iterator, None)

    def rewind(self) -> None:  # pragma: no cover - part of the CalibrationDataReader protocol
        pass


# Activation-range calibration for static int8. On MiniLM / rotten-tomatoes (1,000 eval texts, fp32 0.843),
# 128 training texts padded to 64 tokens: minmax 0.795, entropy 0.782, percentile 99.99 0.826 (99.9: 0.826,
# 99.999: 0.789); as the exporter calibrates (padded to the longest text) percentile gives 0.832. Outliers set
# MinMax's ranges, so the default clips the top 0.01%.
CALIBRATION_METHODS = ("percentile", "minmax", "entropy")


def calibrated_qdq(source: Path, target: Path, calibration: Sequence[dict[str, np.ndarray[Any, Any]]],
                   per_channel: bool, method: str, op_types: Sequence[str], unsigned_activations: bool,
                   percentile: float) -> Path:
    """ONNX Runtime's static QDQ quantization with activation ranges from real inputs, int8 weights
    (symmetric); activations symmetric int8 (TensorRT's form) or asymmetric uint8 (x86 convolution kernels').

    percentile and entropy build histograms across batches, so their batches must share one shape.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = target.with_name(target.stem + ".pre.onnx")
    try:
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    except Exception:  # pre-processing is an optimisation; quantize the plain graph if it fails
        shutil.copy2(source, prepared)

    class Reader(_Feeds, CalibrationDataReader):  # type: ignore[misc]
        pass

    methods = {"percentile": CalibrationMethod.Percentile, "minmax": CalibrationMethod.MinMax,
               "entropy": CalibrationMethod.Entropy}
    extra: dict[str, Any] = {"ActivationSymmetric": not unsigned_activations, "WeightSymmetric": True}
    if method == "percentile":
        extra["CalibPercentile"] = percentile
    quantize_static(str(prepared), str(target), Reader(calibration), quant_format=QuantFormat.QDQ,
                    per_channel=per_channel,
                    activation_type=QuantType.QUInt8 if unsigned_activations else QuantType.QInt8,
                    weight_type=QuantType.QInt8, op_types_to_quantize=list(op_types),
                    calibrate_method=methods[method], extra_options=extra)
    prepared.unlink(missing_ok=True)
    return target


def quantize_int8_static(source: Path, target: Path, calibration: Sequence[dict[str, np.ndarray[Any, Any]]],
                         per_channel: bool, method: str = "percentile") -> Path:
    """QDQ int8 of a text encoder's MatMuls (symmetric, TensorRT's form), calibrated on real texts."""
    return calibrated_qdq(source, target, calibration, per_channel, method, ["MatMul"], unsigned_activations=False,
                          percentile=99.99)


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
