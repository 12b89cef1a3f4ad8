"""LoRA adapters served on one base decoder, any mix of them in one batch.

An adapter is published as `<model>/adapters/<name>/` beside the model's versions (`adapter.safetensors`,
`adapter.json`), in the form the decoder graph takes it: for each linear node of the onnxruntime-genai graph
(`<layer>.attn.qkv_proj`, `<layer>.mlp.down_proj`, ...) `A` [in, width] and `B` [width, out], the LoRA scaling
folded into `B` (q, k and v land side by side in the builder's packed qkv node).

The served graph is the base graph with, after every linear node, `y + ((x @ A) * mask) @ B`: `A` and `B` are
every loaded adapter's matrices side by side (a bank, bound once), and `mask` [rows, width] has ones in each row's
own adapter's columns and zeros elsewhere. So rows of different adapters, and rows of the base model (all zeros:
`y + 0` is `y` exactly), share one forward pass: a request's adapter never waits for a batch of its own, and the
base model's answers are the same with adapters loaded.

No Triton import: the engine uses it in the served model, the exporter to check names and shape adapters.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ADAPTERS_DIR = "adapters"
WEIGHTS_FILE, INFO_FILE = "adapter.safetensors", "adapter.json"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MASK_INPUT = "lora_mask"
_NODE = re.compile(r"^/model/layers\.(\d+)/(attn|mlp)/(\w+_proj)/MatMul")


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ValueError(f"adapter name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter "
                         "or digit")
    return name


def linear_nodes(graph: Any) -> dict[str, Any]:
    """The decoder's linear nodes by key (`0.attn.qkv_proj`), in graph order."""
    found: dict[str, Any] = {}
    for node in graph.node:
        match = _NODE.match(node.name)
        if match and node.op_type in ("MatMul", "MatMulNBits"):
            found[f"{match[1]}.{match[2]}.{match[3]}"] = node
    return found


def node_shapes(graph: Any) -> dict[str, tuple[int, int]]:
    """(in, out) features of every linear node, from its weight's declared shape (MatMul) or attributes (int4)."""
    initializers = {i.name: tuple(i.dims) for i in graph.initializer}
    shapes: dict[str, tuple[int, int]] = {}
    for key, node in linear_nodes(graph).items():
        if node.op_type == "MatMulNBits":
            attributes = {a.name: a.i for a in node.attribute}
            shapes[key] = (int(attributes["K"]), int(attributes["N"]))
        else:
            dims = initializers.get(node.input[1])
            if dims is None or len(dims) != 2:
                continue
            shapes[key] = (int(dims[0]), int(dims[1]))
    return shapes


@dataclass
class LoraWeights:
    """One published adapter: its matrices by node key and `digest`, which changes when it is published again
    (caches computed with an older publication of the same name are not reused)."""

    name: str
    width: int
    tensors: dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]
    digest: str
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: str) -> LoraWeights:
        from safetensors.numpy import load_file

        with open(os.path.join(folder, INFO_FILE), encoding="utf-8") as handle:
            info = json.load(handle)
        flat = load_file(os.path.join(folder, WEIGHTS_FILE))
        tensors = {key[:-2]: (flat[key].astype(np.float32), flat[key[:-2] + ".b"].astype(np.float32))
                   for key in flat if key.endswith(".a")}
        width = int(info["width"])
        for key, (a, b) in tensors.items():
            if a.shape[1] != width or b.shape[0] != width:
                raise ValueError(f"{folder}: {key} has width {a.shape[1]}/{b.shape[0]}, adapter.json says {width}")
        return cls(name=os.path.basename(folder.rstrip("/")), width=width, tensors=tensors,
                   digest=str(info.get("digest", "")), info=info)


def published(model_dir: str) -> dict[str, tuple[float, str]]:
    """The adapters published beside a model: name -> (adapter.json's mtime, folder)."""
    root = os.path.join(model_dir, ADAPTERS_DIR)
    found: dict[str, tuple[float, str]] = {}
    try:
        names = os.listdir(root)
    except OSError:
        return found
    for name in names:
        folder = os.path.join(root, name)
        try:
            found[name] = (os.stat(os.path.join(folder, INFO_FILE)).st_mtime, folder)
        except OSError:
            continue  # being written (published through a temporary name, then renamed) or not an adapter
    return {n: found[n] for n in sorted(found) if NAME.match(n)}


def patch_decoder(model_path: str) -> tuple[bytes, dict[str, tuple[int, int]], str]:
    """The base graph with the adapter bank after every linear node, serialized without its weights (they stay in
    the base's external data file, read from its folder: ONNX Runtime refuses weights linked from elsewhere).
    Returns the graph, the nodes' shapes and the folder of the weights."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(model_path, load_external_data=False)
    graph = model.graph
    shapes = node_shapes(graph)
    nodes = linear_nodes(graph)
    mask_3d = "/lora/mask_3d"
    axes = "/lora/axes"
    graph.initializer.append(helper.make_tensor(axes, TensorProto.INT64, [1], [1]))
    graph.input.append(helper.make_tensor_value_info(MASK_INPUT, TensorProto.FLOAT, ["batch_size", "lora_width"]))
    added: dict[int, list[Any]] = {}
    for key, (in_features, out_features) in shapes.items():
        node = nodes[key]
        output = node.output[0]
        base = f"{output}/lora_base"
        node.output[0] = base
        a, b = f"lora.{key}.a", f"lora.{key}.b"
        graph.input.append(helper.make_tensor_value_info(a, TensorProto.FLOAT, [in_features, "lora_width"]))
        graph.input.append(helper.make_tensor_value_info(b, TensorProto.FLOAT, ["lora_width", out_features]))
        prefix = f"/lora/{key}"
        added[id(node)] = [
            helper.make_node("MatMul", [node.input[0], a], [f"{prefix}/down"], name=f"{prefix}/MatMulA"),
            helper.make_node("Mul", [f"{prefix}/down", mask_3d], [f"{prefix}/masked"], name=f"{prefix}/Mask"),
            helper.make_node("MatMul", [f"{prefix}/masked", b], [f"{prefix}/up"], name=f"{prefix}/MatMulB"),
            helper.make_node("Add", [base, f"{prefix}/up"], [output], name=f"{prefix}/Add"),
        ]
    ordered = [helper.make_node("Unsqueeze", [MASK_INPUT, axes], [mask_3d], name="/lora/Unsqueeze")]
    for node in graph.node:
        ordered.append(node)
        ordered.extend(added.get(id(node), []))
    del graph.node[:]
    graph.node.extend(ordered)
    return model.SerializeToString(), shapes, os.path.dirname(os.path.abspath(model_path))


class Bank:
    """Every loaded adapter's matrices side by side: `arrays` are the graph's bank inputs, `columns[name]` the
    adapter's columns of the mask."""

    def __init__(self, adapters: dict[str, LoraWeights], shapes: dict[str, tuple[int, int]]) -> None:
        self.adapters = dict(adapters)
        self.columns: dict[str, tuple[int, int]] = {}
        offset = 0
        for name, weights in self.adapters.items():
            self.columns[name] = (offset, offset + weights.width)
            offset += weights.width
        self.width = max(offset, 1)  # no adapter: one column of zeros
        self.arrays: dict[str, np.ndarray[Any, Any]] = {}
        for key, (in_features, out_features) in shapes.items():
            a = np.zeros((in_features, self.width), dtype=np.float32)
            b = np.zeros((self.width, out_features), dtype=np.float32)
            for name, weights in self.adapters.items():
                pair = weights.tensors.get(key)
                if pair is not None:
                    first, end = self.columns[name]
                    a[:, first:end], b[first:end] = pair
            self.arrays[f"lora.{key}.a"], self.arrays[f"lora.{key}.b"] = a, b

    def mask(self, adapters: list[str | None]) -> np.ndarray[Any, Any]:
        mask = np.zeros((len(adapters), self.width), dtype=np.float32)
        for row, name in enumerate(adapters):
            if name is not None:
                first, end = self.columns[name]
                mask[row, first:end] = 1.0
        return mask


class AdapterWatcher:
    """Keeps an engine's adapters equal to those published beside a model (`<model>/adapters/`): looked at every
    `poll_s` seconds, and at once when a request names one not loaded yet, so publishing or removing an adapter
    needs no reload. Adapters tuned on other weights than the version serves are skipped, with a log line."""

    def __init__(self, model_dir: str, weights: str, apply: Any, log: Any, poll_s: float = 2.0) -> None:
        import threading

        self.model_dir, self.weights = model_dir, weights
        self.apply, self.log, self.poll_s = apply, log, poll_s
        self.stamps: dict[str, float] = {}
        self.loaded: dict[str, LoraWeights] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.scan()
        threading.Thread(target=self._watch, name="adapters", daemon=True).start()

    def _watch(self) -> None:
        while not self.stopping.wait(self.poll_s):
            try:
                self.scan()
            except Exception as error:  # a broken adapter must not stop the watcher (or the model)
                self.log(f"adapters: {error}")

    def scan(self) -> None:
        """Load what changed in the adapters folder and hand the whole set to the engine."""
        with self.lock:
            found = published(self.model_dir)
            stamps = {name: stamp for name, (stamp, _) in found.items()}
            if stamps == self.stamps:
                return
            loaded = {}
            for name, (stamp, folder) in found.items():
                if self.stamps.get(name) == stamp and name in self.loaded:
                    loaded[name] = self.loaded[name]
                    continue
                try:
                    weights = LoraWeights.load(folder)
                except Exception as error:
                    self.log(f"adapter {name}: cannot be loaded ({error}); skipped")
                    continue
                base = str(weights.info.get("base_weights", ""))
                if self.weights and base != self.weights:
                    self.log(f"adapter {name} was tuned on weights {base}, this version serves {self.weights}; "
                             "skipped (export it again for this version)")
                    continue
                loaded[name] = weights
            self.apply(loaded)
            self.loaded, self.stamps = loaded, stamps

    def close(self) -> None:
        self.stopping.set()
