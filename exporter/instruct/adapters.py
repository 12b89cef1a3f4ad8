"""A PEFT LoRA adapter in the form the served generator's adapter bank takes (exporter/triton_models/lora.py):
matrices per linear node of the onnxruntime-genai graph, the scaling folded in, q/k/v placed in the packed qkv
node. Refused clearly where the adapter is not plain LoRA on the decoder's linear layers."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from tuneship.exporter.errors import ExportError
from tuneship.serving import node_shapes

_MODULE = re.compile(r"(?:^|\.)layers\.(\d+)\.(self_attn|mlp)\.(\w+_proj)\.lora_([AB])\.weight$")
PACKED = ("q_proj", "k_proj", "v_proj")


def read_instruct_checkpoint(path: Path) -> Any:
    """The checkpoint's manifest (trainer.CheckpointInfo); its problems as an ExportError."""
    from tuneship.trainer import TrainingError, read_checkpoint

    try:
        return read_checkpoint(Path(path))
    except TrainingError as error:
        raise ExportError(str(error)) from None


def base_model_dir(checkpoint: Any, why: str) -> Path:
    """The folder of the model the checkpoint was tuned from (its manifest's `base_model_path`)."""
    base = checkpoint.manifest.get("base_model_path")
    if not base or not Path(str(base)).is_dir():
        raise ExportError(f"{checkpoint.path}/tuneship.json: field 'base_model_path' ({base!r}) is not a folder on "
                          f"this machine, {why}")
    return Path(str(base))


def weights_fingerprint(model_dir: Path) -> str:
    """What an adapter must have been tuned on: the model's config and weight files, hashed."""
    digest = hashlib.sha256()
    files = sorted(p for p in model_dir.iterdir() if p.suffix in (".safetensors", ".bin") or p.name == "config.json")
    if not any(p.suffix in (".safetensors", ".bin") for p in files):
        raise ExportError(f"{model_dir}: no weight files (*.safetensors) to fingerprint")
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _check_config(config: dict[str, Any], where: Path) -> float:
    if config.get("peft_type") != "LORA":
        raise ExportError(f"{where}: peft_type {config.get('peft_type')!r}: only LoRA adapters are served as "
                          "adapters")
    for key, refused in (("use_dora", "DoRA"), ("modules_to_save", "modules_to_save"), ("rank_pattern", None),
                         ("alpha_pattern", None), ("fan_in_fan_out", "fan_in_fan_out")):
        if config.get(key):
            raise ExportError(f"{where}: field {key!r} is set ({refused or 'per-module ranks'}): not supported "
                              "for a served adapter; train plain LoRA, or export the merged checkpoint instead")
    if config.get("bias", "none") != "none":
        raise ExportError(f"{where}: field 'bias' is {config['bias']!r}: a served adapter has no biases")
    return float(config["lora_alpha"])


Arrays = dict[str, np.ndarray[Any, Any]]


def convert(adapter_dir: Path, decoder: Path, genai_config: dict[str, Any]) -> tuple[Arrays, int]:
    """The adapter's `<node>.a` [in, width] and `<node>.b` [width, out] arrays, and its width."""
    import onnx
    from safetensors.numpy import load_file

    config_path = adapter_dir / "adapter_config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ExportError(f"{config_path}: cannot read the adapter's config ({error})") from None
    alpha = _check_config(config, config_path)
    rslora = bool(config.get("use_rslora"))
    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    shapes = node_shapes(onnx.load(str(decoder), load_external_data=False).graph)
    decoder_config = genai_config["decoder"]
    head = int(decoder_config["head_size"])
    sizes = {"q_proj": int(decoder_config["num_attention_heads"]) * head,
             "k_proj": int(decoder_config["num_key_value_heads"]) * head,
             "v_proj": int(decoder_config["num_key_value_heads"]) * head}
    modules: dict[tuple[str, str, str], dict[str, np.ndarray[Any, Any]]] = {}
    for key, tensor in weights.items():
        match = _MODULE.search(key)
        if match is None:
            raise ExportError(f"{adapter_dir}: tensor {key!r} is not a LoRA matrix of a decoder layer's linear "
                              "projection; only those can be served as an adapter")
        layer, group, proj, which = match.groups()
        modules.setdefault((layer, group, proj), {})[which] = tensor.astype(np.float32)
    # Each node's pieces: (A [in, r], B [r, out] scaled, where its outputs start in the node).
    pieces: dict[str, list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], int]]] = {}
    for (layer, group, proj), pair in sorted(modules.items()):
        if set(pair) != {"A", "B"}:
            raise ExportError(f"{adapter_dir}: layer {layer} {proj} lacks lora_{'B' if 'A' in pair else 'A'}")
        a, b = pair["A"], pair["B"]
        rank = a.shape[0]
        scale = alpha / (rank ** 0.5 if rslora else rank)
        section = "attn" if group == "self_attn" else "mlp"
        node, offset = f"{layer}.{section}.{proj}", 0
        if node not in shapes and proj in PACKED and f"{layer}.{section}.qkv_proj" in shapes:
            node = f"{layer}.{section}.qkv_proj"
            offset = sum(sizes[p] for p in PACKED[:PACKED.index(proj)])
        if node not in shapes:
            raise ExportError(f"{adapter_dir}: layer {layer} {proj} has no linear node in the published graph "
                              f"({decoder.name}); is this adapter for this base model?")
        in_features, out_features = shapes[node]
        if a.shape[1] != in_features or offset + b.shape[0] > out_features:
            raise ExportError(f"{adapter_dir}: layer {layer} {proj} is {a.shape[1]} -> {b.shape[0]} features, the "
                              f"published model's is {in_features} -> {out_features}: not an adapter of this base")
        pieces.setdefault(node, []).append((a.T, (b * scale).T, offset))
    if not pieces:
        raise ExportError(f"{adapter_dir}: the adapter has no LoRA matrices")
    width = max(sum(a.shape[1] for a, _, _ in parts) for parts in pieces.values())
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    for node, parts in pieces.items():
        in_features, out_features = shapes[node]
        a_all = np.zeros((in_features, width), dtype=np.float32)
        b_all = np.zeros((width, out_features), dtype=np.float32)
        column = 0
        for a, b, offset in parts:
            rank = a.shape[1]
            a_all[:, column:column + rank] = a
            b_all[column:column + rank, offset:offset + b.shape[1]] = b
            column += rank
        arrays[f"{node}.a"], arrays[f"{node}.b"] = a_all, b_all
    return arrays, width
