"""int8 with activations quantized per token: answers that do not depend on batch-mates.

ONNX Runtime's dynamic int8 picks one activation scale for the whole batch tensor, so a text's answer moves with
whatever it is batched with (and with the padding the longest batch-mate brings). Here every MatMul / Gemm with a
constant weight becomes: per-row (token) symmetric scale of the activations, quantize to uint8 around a fixed
zero point of 128, `MatMulInteger` against int8 weights quantized per output column, and both scales applied to
the int32 result. Each token's numbers depend on that token only, so the answers are batch-invariant; the
activation-by-activation products inside attention stay in fp32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def quantize_int8_rowwise(source: Path, target: Path) -> int:
    """Write the rewritten graph to `target`; returns how many weight products were quantized."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    weights = {i.name: i for i in graph.initializer}
    nodes: list[Any] = []
    added: list[Any] = []
    count = 0
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        gemm = (node.op_type == "Gemm" and node.input[1] in weights and not attrs.get("transA", 0)
                and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0)
        if not (gemm or (node.op_type == "MatMul" and node.input[1] in weights)):
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)
        if gemm and attrs.get("transB", 0):
            weight = weight.T
        column_scale = np.abs(weight).max(axis=0) / 127.0
        column_scale[column_scale == 0] = 1.0
        quantized = np.clip(np.round(weight / column_scale), -127, 127).astype(np.int8)
        p = f"rowwise{count}_"
        count += 1
        added += [numpy_helper.from_array(quantized, p + "w"),
                  numpy_helper.from_array(column_scale.astype(np.float32), p + "w_scale"),
                  numpy_helper.from_array(np.array(1 / 127.0, dtype=np.float32), p + "inv127"),
                  numpy_helper.from_array(np.array(1e-12, dtype=np.float32), p + "eps"),
                  numpy_helper.from_array(np.array(128.0, dtype=np.float32), p + "offset"),
                  numpy_helper.from_array(np.array(128, dtype=np.uint8), p + "zero_point")]
        a, biased = node.input[0], gemm and len(node.input) > 2
        nodes += [
            helper.make_node("Abs", [a], [p + "abs"]),
            helper.make_node("ReduceMax", [p + "abs"], [p + "max"], keepdims=1, axes=[-1]),
            helper.make_node("Max", [p + "max", p + "eps"], [p + "max_safe"]),
            helper.make_node("Mul", [p + "max_safe", p + "inv127"], [p + "a_scale"]),
            helper.make_node("Div", [a, p + "a_scale"], [p + "scaled"]),
            helper.make_node("Round", [p + "scaled"], [p + "rounded"]),
            helper.make_node("Add", [p + "rounded", p + "offset"], [p + "shifted"]),  # uint8 around 128: U8S8 GEMM
            helper.make_node("Cast", [p + "shifted"], [p + "a_q"], to=TensorProto.UINT8),
            helper.make_node("MatMulInteger", [p + "a_q", p + "w", p + "zero_point"], [p + "int32"]),
            helper.make_node("Cast", [p + "int32"], [p + "float"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [p + "float", p + "w_scale"], [p + "by_column"]),
            helper.make_node("Mul", [p + "by_column", p + "a_scale"], [p + "product" if biased else node.output[0]]),
        ]
        if biased:
            nodes.append(helper.make_node("Add", [p + "product", node.input[2]], [node.output[0]]))
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(added)
    used = {name for n in graph.node for name in n.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.save(model, str(target))
    return count
