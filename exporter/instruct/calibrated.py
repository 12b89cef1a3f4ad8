"""Calibrated 4-bit weights for a causal LM, computed from the fp32 build with ONNX Runtime's weight-only
quantizer (`matmul_nbits_quantizer`): HQQ (half-quadratic, fitted to each weight block, no data needed) or GPTQ
(each layer's weights corrected for its inputs' second moments, measured by prefilling held-in prompts). The
builder's own int4 rounds every block to nearest (`k_quant` picks the scales); these methods spend a minute or a
few to lose less, which is what the exporter's ladder tries before falling back to 8-bit weights.

The graph, genai_config.json and the tokenizer stay the fp32 build's: only the MatMul weights become MatMulNBits
(4 bits, blocks of 32, int8 activations on CPU as the builder's int4 computes), so the same runner serves it."""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tuneship.exporter.errors import ExportError
from tuneship.exporter.instruct.build import GenaiVariant

CALIBRATED_METHODS = ("gptq", "hqq")
BLOCK_SIZE = 32
ACCURACY_LEVEL = 4  # int8 activations in MatMulNBits: the builder's CPU int4 computes this way


class _Prefills:
    """GPTQ's calibration data: each prompt's prefill inputs of the decoder graph (an empty past)."""

    def __init__(self, folder: Path, prompts: Sequence[Sequence[int]]) -> None:
        config = json.loads((folder / "genai_config.json").read_text())["model"]
        decoder = config["decoder"]
        names = decoder.get("inputs", {})
        self.key = names.get("past_key_names", "past_key_values.%d.key")
        self.value = names.get("past_value_names", "past_key_values.%d.value")
        self.layers, self.heads = int(decoder["num_hidden_layers"]), int(decoder["num_key_value_heads"])
        self.head_size = int(decoder["head_size"])
        self.prompts = [list(p) for p in prompts]
        self.index = 0

    def get_next(self) -> dict[str, np.ndarray[Any, Any]] | None:
        if self.index >= len(self.prompts):
            return None
        prompt = self.prompts[self.index]
        self.index += 1
        empty = np.zeros((1, self.heads, 0, self.head_size), dtype=np.float32)
        feeds: dict[str, np.ndarray[Any, Any]] = {"input_ids": np.asarray([prompt], dtype=np.int64),
                                                  "attention_mask": np.ones((1, len(prompt)), dtype=np.int64)}
        for layer in range(self.layers):
            feeds[self.key % layer] = empty
            feeds[self.value % layer] = empty
        return feeds

    def rewind(self) -> None:
        self.index = 0

    def __iter__(self) -> Iterator[dict[str, np.ndarray[Any, Any]]]:
        self.rewind()
        while (feeds := self.get_next()) is not None:
            yield feeds


def build_calibrated(fp32: GenaiVariant, workdir: Path, method: str,
                     prompts: Sequence[Sequence[int]] = ()) -> GenaiVariant:
    """The fp32 build's weights quantized to 4 bits by `method` (one of CALIBRATED_METHODS); GPTQ prefills
    `prompts` (token ids) to calibrate."""
    import onnx
    from onnxruntime.quantization import matmul_nbits_quantizer as nbits

    if method not in CALIBRATED_METHODS:
        raise ExportError(f"--int4-calibrated {method!r}: use one of {', '.join(CALIBRATED_METHODS)}")
    if method == "gptq" and not prompts:
        raise ExportError("GPTQ needs calibration prompts (the checkpoint's training data)")
    out = workdir / f"cpu-int4-{method}"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model_file = json.loads((fp32.path / "genai_config.json").read_text())["model"]["decoder"]["filename"]
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    config: Any
    if method == "hqq":
        config = nbits.HQQWeightOnlyQuantConfig(block_size=BLOCK_SIZE, bits=4)
    else:
        reader = _Prefills(fp32.path, prompts)
        config = nbits.GPTQWeightOnlyQuantConfig(calibration_data_reader=reader, block_size=128)  # type: ignore[arg-type]
    # Weights in memory (a small model's are well under protobuf's 2 GB): GPTQ runs the graph from bytes.
    model = onnx.load(str(fp32.path / model_file))
    quantizer = nbits.MatMulNBitsQuantizer(model, block_size=BLOCK_SIZE, is_symmetric=False,
                                           accuracy_level=ACCURACY_LEVEL, algo_config=config)
    try:
        with warnings.catch_warnings():  # HQQ hands torch read-only weights it only reads
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            quantizer.process()
    except Exception as error:  # ONNX Runtime's quantizer on a graph it cannot take: named, not a traceback
        raise ExportError(f"{method} quantization failed: {str(error).splitlines()[0][:300]}") from None
    quantized = quantizer.model.model if hasattr(quantizer.model, "model") else quantizer.model
    onnx.save_model(quantized, str(out / model_file), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=f"{model_file}.data", size_threshold=1024)
    for item in fp32.path.iterdir():
        if item.is_file() and not item.name.startswith(model_file):
            shutil.copy2(item, out / item.name)
    return GenaiVariant(name=f"int4-{method}", precision="int4", path=out, provider="cpu")
