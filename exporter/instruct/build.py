"""Variants of a causal LM built by onnxruntime-genai's model builder (fp32, int4 and int8 on CPU; fp16 and int4
on CUDA), each a folder with the ONNX graph, its weights, genai_config.json and the tokenizer files."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tuneship.exporter.errors import ExportError
from tuneship.exporter.instruct.options import INT4_METHODS as INT4_METHODS

# (target, precision) -> (builder precision, execution provider)
BUILDS = {
    ("cpu", "fp32"): ("fp32", "cpu"),
    ("cpu", "int4"): ("int4", "cpu"),
    ("cpu", "int8"): ("int8", "cpu"),  # 8-bit weights in every MatMul (MatMulNBits, round to nearest)
    ("gpu", "fp16"): ("fp16", "cuda"),
    ("gpu", "int4"): ("int4", "cuda"),
}


@dataclass
class GenaiVariant:
    name: str
    precision: str
    path: Path
    provider: str

    @property
    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())


def check_builder() -> None:
    for module, requirement in (("onnxruntime_genai", "onnxruntime-genai"), ("onnx_ir", "onnx-ir")):
        if importlib.util.find_spec(module) is None:
            raise ExportError(f"exporting an instruct checkpoint needs {requirement}: pip install {requirement}")


# Every build computes the output layer for the last prompt position only: prefill needs no logits before it,
# and the 49k x 576 output layer was a fifth of SmolLM2's prefill (first token 95 -> 82 ms int4, 94 -> 74 fp32).
BUILD_OPTIONS = ("prune_lm_head=true",)


def build_variant(checkpoint: Path, workdir: Path, target: str, precision: str,
                  int4_method: str = "k_quant") -> GenaiVariant:
    """Run the builder in its own process (it prints a progress line per tensor): its log goes to a file."""
    builder_precision, provider = BUILDS[(target, precision)]
    out = workdir / f"{target}-{precision}"
    log = workdir / f"builder-{target}-{precision}.log"
    command = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(checkpoint), "-o", str(out),
               "-p", builder_precision, "-e", provider, "-c", str(workdir / "builder-cache")]
    command += ["--extra_options", *BUILD_OPTIONS]
    if precision == "int4":
        command.append(f"algo_config={int4_method}")
    with log.open("w") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0 or not (out / "genai_config.json").is_file():
        tail = " | ".join(line.strip() for line in log.read_text(errors="replace").splitlines()[-4:] if line.strip())
        raise ExportError(f"onnxruntime-genai's builder failed for {precision} on {provider} "
                          f"(exit {done.returncode}): {tail[-600:]}")
    return GenaiVariant(name=f"{precision}" if target == "cpu" else f"{precision}-cuda", precision=precision,
                        path=out, provider=provider)
