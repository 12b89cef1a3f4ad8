"""Small ONNX models and Triton configs written by tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from google.protobuf import text_format
from onnx import TensorProto, helper, numpy_helper
from tritonclient.grpc import model_config_pb2 as mc


def write_linear_onnx(path: Path, weight: np.ndarray, bias: np.ndarray) -> None:
    """Y = X @ W + B with a dynamic batch axis."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["XW"]), helper.make_node("Add", ["XW", "B"], ["Y"])],
        "linear",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", weight.shape[0]])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", weight.shape[1]])],
        initializer=[numpy_helper.from_array(weight.astype(np.float32), "W"),
                     numpy_helper.from_array(bias.astype(np.float32), "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def write_linear_model(repository: Path, name: str, weight: np.ndarray, bias: np.ndarray,
                       queue_delay_us: int = 0) -> None:
    config = mc.ModelConfig(name=name, platform="onnxruntime_onnx", max_batch_size=64)
    config.input.add(name="X", data_type=mc.TYPE_FP32, dims=[weight.shape[0]])
    config.output.add(name="Y", data_type=mc.TYPE_FP32, dims=[weight.shape[1]])
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
    config.dynamic_batching.max_queue_delay_microseconds = queue_delay_us
    config.parameters["intra_op_thread_count"].string_value = "1"
    (repository / name).mkdir(parents=True, exist_ok=True)
    (repository / name / "config.pbtxt").write_text(text_format.MessageToString(config))
    write_linear_onnx(repository / name / "1" / "model.onnx", weight, bias)
