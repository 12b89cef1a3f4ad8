"""Is there a fast batch-invariant int8? Weight-only 8-bit MatMulNBits against dynamic int8 and fp32 (BENCHMARKS.md).

    .venv/bin/tuneship export runs/sentiment --name sentiment --precision fp32 --no-optimize \
        --repository /tmp/fp32repo
    .venv/bin/python benchmarks/weight_only_int8.py /tmp/fp32repo/sentiment_model/1/model.onnx runs/sentiment

Quantizes the plain fp32 graph three ways (MatMulNBits 8-bit block 32 with int8 compute, the same with fp32
compute, ONNX Runtime's dynamic int8 per channel), then for each: median latency at batch 1 and 32 (7 rounds in
turns), accuracy on 300 eval texts, and the batch variation (16 texts alone vs together).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("onnx", type=Path, help="the plain fp32 ONNX graph of a classifier")
    parser.add_argument("checkpoint", type=Path, help="its checkpoint (tokenizer, labels, eval.jsonl)")
    args = parser.parse_args()

    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer
    from transformers import AutoTokenizer

    scratch = Path(tempfile.mkdtemp())
    paths = {"fp32": args.onnx}
    for name, accuracy_level in (("nbits8 int8 compute", 4), ("nbits8 fp32 compute", 1)):
        config = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True, accuracy_level=accuracy_level, bits=8)
        quantizer = MatMulNBitsQuantizer(onnx.load(str(args.onnx)), bits=8, block_size=32, is_symmetric=True,
                                         accuracy_level=accuracy_level, algo_config=config)
        quantizer.process()
        paths[name] = scratch / f"{accuracy_level}.onnx"
        quantizer.model.save_model_to_file(str(paths[name]), use_external_data_format=False)
    paths["dynamic int8"] = scratch / "dynamic.onnx"
    quantize_dynamic(str(args.onnx), str(paths["dynamic int8"]), weight_type=QuantType.QInt8, per_channel=True)

    tokenizer = AutoTokenizer.from_pretrained(str(args.checkpoint))
    labels = json.loads((args.checkpoint / "tuneship.json").read_text())["labels"]
    rows = [json.loads(line) for line in (args.checkpoint / "eval.jsonl").read_text().splitlines()][:300]
    texts = [r["text"] for r in rows]
    sessions: dict[str, Any] = {}
    for name, path in paths.items():
        options = ort.SessionOptions()
        options.log_severity_level = 3
        sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(name: str, chosen: list[str]) -> Any:
        session = sessions[name]
        encoded = tokenizer(chosen, truncation=True, max_length=128, padding=True, return_tensors="np")
        return session.run(None, {i.name: encoded[i.name].astype(np.int64) for i in session.get_inputs()})[0]

    def softmax(x: Any) -> Any:
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    times: dict[str, dict[int, list[float]]] = {name: {1: [], 32: []} for name in sessions}
    for _ in range(7):
        for name in sessions:
            for batch in (1, 32):
                started = time.perf_counter()
                run(name, texts[:batch])
                times[name][batch].append((time.perf_counter() - started) * 1000)
    for name in sessions:
        alone = np.concatenate([softmax(run(name, [t])) for t in texts[:16]])
        variation = float(np.abs(alone - softmax(run(name, texts[:16]))).max())
        logits = np.concatenate([run(name, texts[i:i + 64]) for i in range(0, len(texts), 64)])
        accuracy = float(np.mean([labels[int(i)] == r["label"] for i, r in zip(logits.argmax(-1), rows, strict=True)]))
        b1, b32 = statistics.median(times[name][1]), statistics.median(times[name][32])
        print(f"{name:<22} b1 {b1:6.1f} ms  b32 {b32:7.1f} ms  accuracy {accuracy:.3f}  batch variation "
              f"{variation:.1e}", flush=True)


if __name__ == "__main__":
    main()
