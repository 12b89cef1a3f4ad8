"""ONNX graphs of an image classifier: fp32 as traced, static int8 (QDQ, calibrated on training images), fp16.

Convolutions have no dynamic int8 form in ONNX Runtime, so int8 is static: activation ranges come from the
checkpoint's sample of training images, weights are per-channel. uint8 activations with int8 weights (U8S8) is
the combination ONNX Runtime's x86 convolution kernels run fast (VNNI); int8 activations were 3-4x slower here.

Only the convolutional body is quantized; the pooling and the linear head stay fp32. A features head folds the
feature standardisation into its weights, so a few low-variance features carry large weights, and an 8-bit
pooled-feature input loses exactly their variation: with the head quantized, EfficientNet-lite0's int8 answered one
class for every image (held-out accuracy 0.95 -> 0.50); without, 0.95, at the same speed (the head is a
thousandth of the work).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tuneship.exporter.variants import calibrated_qdq

INPUT = "pixel_values"
OUTPUT = "logits"
# The convolutional body and what sits between its convolutions; not Gemm / MatMul / ReduceMean (see above).
QUANTIZED_OPS = ("Conv", "Clip", "Relu", "Add", "Mul", "Sigmoid", "MaxPool", "AveragePool")


def export_image_onnx(model: Any, path: Path, image_size: int, opset: int) -> None:
    """Pixels [N, 3, S, S] -> logits [N, labels], the batch dimension dynamic."""
    import warnings

    import torch

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: Any) -> Any:
            return self.model(pixel_values)["logits"]

    # eval() on the wrapper too: the exporter restores the wrapper's mode afterwards, and a wrapper left in
    # training mode would switch the classifier's batch norms to batch statistics.
    wrapper = Logits().eval()
    sample = torch.zeros(1, 3, image_size, image_size)
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice: it is the one that works here
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(wrapper, (sample,), str(path), input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}, opset_version=opset,
                          do_constant_folding=True, dynamo=False)


def quantize_static_int8(source: Path, target: Path, calibration: Sequence[np.ndarray[Any, Any]], per_channel: bool,
                         method: str) -> Path:
    return calibrated_qdq(source, target, [{INPUT: batch} for batch in calibration], per_channel, method,
                          QUANTIZED_OPS, unsigned_activations=True, percentile=99.999)


def convert_fp16(source: Path, target: Path) -> Path:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(source)), keep_io_types=True), str(target))
    return target
