"""fp32 and onnxruntime-genai's int4 quantization methods, compared on one instruct checkpoint (BENCHMARKS.md).

    .venv/bin/python benchmarks/int4_methods.py runs/instruct-rt

Builds each int4 variant, answers 200 held-out prompts greedily (exact match against the checkpoint's eval set)
and measures time to first token and decode speed in process. The calibrated 4-bit methods (issue 39) are ONNX
Runtime's weight-only quantizer on the fp32 build (`exporter/instruct/calibrated.py`, what the exporter's ladder
runs): GPTQ calibrated on 32 held-out prompts beyond the 200 scored ones, and HQQ (no data).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

METHODS = {  # name: (precision, builder extra options)
    "fp32 (reference)": ("fp32", []),
    "rtn (builder default)": ("int4", []),
    "k_quant_mixed": ("int4", ["algo_config=k_quant_mixed"]),
    "k_quant": ("int4", ["algo_config=k_quant"]),
    "k_quant_last": ("int4", ["algo_config=k_quant_last"]),
    "k_quant, pruned head": ("int4", ["algo_config=k_quant", "prune_lm_head=true"]),
    "k_quant_last, pruned": ("int4", ["algo_config=k_quant_last", "prune_lm_head=true"]),
    "rtn, pruned head": ("int4", ["prune_lm_head=true"]),
    "rtn, block 64": ("int4", ["prune_lm_head=true", "block_size=64"]),
    "rtn, block 128": ("int4", ["prune_lm_head=true", "block_size=128"]),
    "rtn, fp32 compute": ("int4", ["accuracy_level=1"]),
    "rtn, block size 16": ("int4", ["block_size=16"]),
    # Issue 23's quantized variant inside the 1-point gate: 8-bit weights, or int4 with float activations.
    "k_quant, fp32 compute, pruned": ("int4", ["algo_config=k_quant", "prune_lm_head=true", "accuracy_level=1"]),
    "k_quant_mixed, pruned": ("int4", ["algo_config=k_quant_mixed", "prune_lm_head=true"]),
    "int8 weights, pruned": ("int8", ["prune_lm_head=true"]),
    "int8 k_quant, pruned": ("int8", ["algo_config=k_quant", "prune_lm_head=true"]),
    "int8, fp32 compute, pruned": ("int8", ["prune_lm_head=true", "accuracy_level=1"]),
    # Issue 39: calibrated 4-bit weights on the pruned fp32 build (the exporter's ladder's rung).
    "int4 GPTQ, pruned": ("gptq", []),
    "int4 HQQ, pruned": ("hqq", []),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--only", nargs="*", help="the methods to run (default: all)")
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from tuneship.exporter.instruct.measure import GenaiRunner, decode_speed
    from tuneship.trainer.instruct.data import read_conversations
    from tuneship.trainer.instruct.evaluation import normalise, prompt_ids

    tokenizer = AutoTokenizer.from_pretrained(str(args.checkpoint))
    gate = read_conversations(args.checkpoint / "eval.jsonl")[:args.prompts]
    with tempfile.TemporaryDirectory() as scratch:
        for name, (precision, extra) in METHODS.items():
            if args.only and name not in args.only:
                continue
            out = Path(scratch) / name.replace(" ", "_").replace(",", "")
            if precision in ("gptq", "hqq"):
                from tuneship.exporter.instruct.build import build_variant
                from tuneship.exporter.instruct.calibrated import build_calibrated

                fp32 = Path(scratch) / "fp32-pruned"
                fp32.mkdir(exist_ok=True)
                if not (fp32 / "cpu-fp32" / "genai_config.json").is_file():
                    build_variant(args.checkpoint, fp32, "cpu", "fp32")
                from tuneship.exporter.instruct.build import GenaiVariant

                held = read_conversations(args.checkpoint / "eval.jsonl")[args.prompts:args.prompts + 32]
                built = build_calibrated(GenaiVariant("fp32", "fp32", fp32 / "cpu-fp32", "cpu"), out, precision,
                                         [prompt_ids(tokenizer, c) for c in held])
                out = built.path
            else:
                command = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(args.checkpoint), "-o",
                           str(out), "-p", precision, "-e", "cpu", "-c", str(Path(scratch) / "cache")]
                if extra:
                    command += ["--extra_options", *extra]
                subprocess.run(command, check=True, capture_output=True)
            runner = GenaiRunner(out)
            hits = 0
            for conversation in gate:
                tokens, _ = runner.greedy(prompt_ids(tokenizer, conversation), 8)
                hits += normalise(tokenizer.decode(tokens, skip_special_tokens=True)) == normalise(conversation.answer)
            ttft, rate = decode_speed(runner, prompt_ids(tokenizer, gate[0]))
            size = sum(f.stat().st_size for f in out.iterdir() if f.is_file()) / 1e6
            print(f"{name:<24} exact {hits / len(gate):.3f}  TTFT {ttft:6.1f} ms  {rate:6.1f} tokens/s  {size:6.1f} MB",
                  flush=True)


if __name__ == "__main__":
    main()
