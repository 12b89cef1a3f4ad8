"""What each token input of an ONNX model may hold, read from the model's own embedding tables.

ONNX Runtime fails a whole batch when one row holds an id past the end of an embedding table, and silently
takes another row for some others: Gather accepts negative indices (counted from the end), and the fused
EmbedLayerNormalization casts int64 ids to int32, so 2**32 + 5 becomes token 5. Checking every request on its
own, against the tables it will index, before it joins a batch keeps one caller's bad ids from failing or
changing anyone else's answer.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Nodes that pass an id tensor on unchanged in value (only in type or shape) on the way to its table.
_PASS_THROUGH = {"Cast", "Unsqueeze", "Squeeze", "Reshape", "Identity", "Flatten", "Expand"}
# EmbedLayerNormalization: which input holds the table for which id input (com.microsoft contrib op).
_EMBED_TABLES = {0: 2, 1: 4}  # input_ids -> word_embedding, segment_ids -> segment_embedding
_EMBED_POSITIONS = 3


@dataclass(frozen=True)
class InputLimits:
    """Exclusive upper bounds of id inputs (their tables' row counts) and the longest sequence allowed."""

    upper: dict[str, int] = field(default_factory=dict)
    max_length: int | None = None

    def describe(self) -> str:
        parts = [f"{name} < {bound}" for name, bound in sorted(self.upper.items())]
        if self.max_length is not None:
            parts.append(f"length <= {self.max_length}")
        return ", ".join(parts) or "none found"


def read_limits(path: str, input_names: Sequence[str]) -> InputLimits:
    """Follow each input to the embedding table it indexes (Gather or EmbedLayerNormalization)."""
    import onnx

    model = onnx.load(path, load_external_data=False)
    graph = model.graph
    rows = {init.name: int(init.dims[0]) for init in graph.initializer if len(init.dims) >= 1}
    consumers: dict[str, list[tuple[Any, int]]] = defaultdict(list)
    for node in graph.node:
        for index, name in enumerate(node.input):
            consumers[name].append((node, index))

    def reached(name: str, depth: int = 0) -> Iterator[tuple[Any, int]]:
        for node, index in consumers.get(name, []):
            if node.op_type in _PASS_THROUGH and index == 0 and depth < 8:
                yield from reached(node.output[0], depth + 1)
            else:
                yield node, index

    upper: dict[str, int] = {}
    max_length: int | None = None
    for name in input_names:
        for node, index in reached(name):
            table = None
            if node.op_type == "Gather" and index == 1:
                table = node.input[0]
            elif node.op_type == "EmbedLayerNormalization":
                slot = _EMBED_TABLES.get(index)
                table = node.input[slot] if slot is not None and len(node.input) > slot else None
                positions = node.input[_EMBED_POSITIONS] if len(node.input) > _EMBED_POSITIONS else ""
                if positions in rows:
                    max_length = min(max_length or rows[positions], rows[positions])
            if table in rows:
                upper[name] = min(upper.get(name, rows[table]), rows[table])
    if max_length is None:
        # Unfused graphs look positions up from a constant range: the table named for positions bounds the length.
        for node in graph.node:
            if node.op_type == "Gather" and node.input[0] in rows and "position" in node.input[0].lower():
                max_length = min(max_length or rows[node.input[0]], rows[node.input[0]])
    return InputLimits(upper=upper, max_length=max_length)


def check_request(arrays: Mapping[str, np.ndarray[Any, Any]], limits: InputLimits, batched: bool) -> str | None:
    """None when the request fits the model, else a message naming the input and the limit it breaks.

    Only inputs that index a table (and, for the length, integer inputs of a model with a position table) are
    checked: the bridge serves any ONNX model, and Triton has already checked each input's dtype and dims
    against the config.
    """
    for name, array in arrays.items():
        bound = limits.upper.get(name)
        tokens = array.dtype.kind in "iu" and limits.max_length is not None
        if bound is None and not tokens:
            continue
        if array.ndim != (2 if batched else 1):
            return f"input {name!r} has shape {list(array.shape)}; the model takes [batch, tokens]"
        if tokens and limits.max_length is not None and array.shape[-1] > limits.max_length:
            return (f"input {name!r} holds {array.shape[-1]} tokens per row; the model's position table has "
                    f"{limits.max_length} (truncate to at most {limits.max_length})")
        if bound is None or array.size == 0:
            continue
        if array.dtype.kind not in "iu":
            return f"input {name!r} has dtype {array.dtype}; it indexes a table and must hold integers"
        low, high = int(array.min()), int(array.max())
        if low < 0 or high >= bound:
            bad = low if low < 0 else high
            return (f"input {name!r} holds {bad}, outside the model's table of {bound} entries "
                    f"(valid values: 0 to {bound - 1})")
    return None
