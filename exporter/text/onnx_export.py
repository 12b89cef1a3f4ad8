"""Checkpoint -> ONNX with dynamic batch and sequence axes.

optimum-onnx would be the natural exporter, but its releases pin transformers < 4.58 while the
trainer needs transformers 5; torch.onnx's TorchScript exporter handles these encoders directly.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tuneship.exporter.errors import ExportError


class _LogitsOnly:
    """Wraps a HF classifier so the exported graph has exactly one output, `logits`."""

    def __new__(cls, model: Any) -> Any:
        import torch

        class Wrapper(torch.nn.Module):
            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
                kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
                if token_type_ids is not None:
                    kwargs["token_type_ids"] = token_type_ids
                return self.inner(**kwargs).logits

        return Wrapper(model)


@contextmanager
def eager_attention(model: Any) -> Iterator[None]:
    """Trace the plain matmul-softmax attention instead of SDPA, restoring the model's choice afterwards.

    transformers 5 routes BERT-like attention through scaled_dot_product_attention, which traces to a
    graph (IsNaN/Where masking) that ONNX Runtime's transformer optimizer does not recognise: no
    Attention fusion, hence no QAttention for int8. The eager path traces to the pattern it fuses.
    """
    configs = {id(m.config): m.config for m in model.modules() if hasattr(getattr(m, "config", None),
                                                                         "_attn_implementation")}
    before = {key: config._attn_implementation for key, config in configs.items()}
    try:
        for config in configs.values():
            config._attn_implementation = "eager"
        yield
    finally:
        for key, config in configs.items():
            config._attn_implementation = before[key]


def model_input_names(tokenizer: Any) -> list[str]:
    """The token tensors the model takes, in a fixed order (token_type_ids only where the model has them)."""
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names]
    if names[:2] != ["input_ids", "attention_mask"]:
        raise ExportError(
            f"unsupported tokenizer inputs {tokenizer.model_input_names}: need input_ids and attention_mask")
    return names


def export_onnx(model: Any, tokenizer: Any, path: Path, opset: int = 17) -> list[str]:
    """Write `path` and return the graph's input names."""
    import torch

    names = model_input_names(tokenizer)
    sample = tokenizer(["a short text", "a somewhat longer text to give the sequence axis a size"],
                       padding=True, return_tensors="pt")
    args = tuple(sample[name] for name in names)
    dynamic_axes: dict[str, dict[int, str]] = {name: {0: "batch", 1: "sequence"} for name in names}
    dynamic_axes["logits"] = {0: "batch"}
    # The wrapper must be in eval mode too: the exporter restores the wrapper's mode afterwards, and a
    # wrapper left in training mode would switch the wrapped model's dropout back on.
    wrapper = _LogitsOnly(model).eval()
    with warnings.catch_warnings(), torch.inference_mode(), eager_attention(model):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, args, str(path), input_names=names, output_names=["logits"], dynamic_axes=dynamic_axes,
            opset_version=opset, do_constant_folding=True, dynamo=False,
        )
    model.eval()
    import onnx

    onnx.checker.check_model(str(path))
    return names
