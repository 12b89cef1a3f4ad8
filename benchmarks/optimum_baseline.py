"""Optimum (optimum-onnx) baseline for the export benchmark; runs in its own venv (.venv-optimum),
since optimum-onnx pins transformers < 4.58 and tuneship needs transformers 5.

    .venv-optimum/bin/python benchmarks/optimum_baseline.py runs/sentiment --out runs/bench/optimum.json

The stock recipe: export, O2 graph optimization, dynamic int8 with
AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True); measured like export_speed.py.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from onnx_timing import benchmark_arguments, ort_accuracy, ort_session, time_call, token_batch


def main() -> int:
    args = benchmark_arguments()

    from optimum.onnxruntime import ORTModelForSequenceClassification, ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig, AutoQuantizationConfig
    from transformers import AutoTokenizer

    manifest = json.loads((args.checkpoint / "tuneship.json").read_text())
    labels = manifest["labels"]
    texts, label_ids = [], []
    for line in (args.checkpoint / "eval.jsonl").read_text().splitlines()[: args.eval_samples]:
        record = json.loads(line)
        texts.append(record["text"])
        label_ids.append(labels.index(record["label"]))
    tokenizer = AutoTokenizer.from_pretrained(str(args.checkpoint))
    rows = []
    timings = {}
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        model = ORTModelForSequenceClassification.from_pretrained(str(args.checkpoint), export=True)
        model.save_pretrained(f"{scratch}/fp32")
        timings["export_s"] = time.perf_counter() - started
        paths = {"optimum-fp32": f"{scratch}/fp32/model.onnx"}
        started = time.perf_counter()
        try:
            optimizer = ORTOptimizer.from_pretrained(model)
            optimizer.optimize(save_dir=f"{scratch}/o2", optimization_config=AutoOptimizationConfig.O2())
            paths["optimum-O2"] = f"{scratch}/o2/model_optimized.onnx"
        except Exception as error:
            timings["O2_error"] = str(error)[:300]
        timings["optimize_s"] = time.perf_counter() - started
        started = time.perf_counter()
        quantizer = ORTQuantizer.from_pretrained(f"{scratch}/fp32")
        quantizer.quantize(save_dir=f"{scratch}/int8",
                           quantization_config=AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True))
        timings["quantize_s"] = time.perf_counter() - started
        paths["optimum-int8"] = f"{scratch}/int8/model_quantized.onnx"
        first = ort_session(paths["optimum-fp32"], args.threads)
        names = [i.name for i in first.get_inputs()]
        feeds = {b: token_batch(tokenizer, texts, b, 128, names) for b in (1, 32)}
        for name, path in paths.items():
            session = ort_session(path, args.threads)
            times = {b: time_call(lambda b=b, s=session: s.run(None, feeds[b]), repeats=20 if b == 1 else 5)
                     for b in (1, 32)}
            rows.append({"variant": name, "b1_ms": times[1] * 1000, "b32_ms": times[32] * 1000,
                         "accuracy": ort_accuracy(session, tokenizer, texts, label_ids, manifest["max_length"], names),
                         "size_mb": Path(path).stat().st_size / 1e6})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"threads": args.threads, "timings": timings, "rows": rows}, indent=2) + "\n")
    for row in rows:
        print(f"{row['variant']:<16} b1 {row['b1_ms']:7.1f} ms  b32 {row['b32_ms']:8.1f} ms  "
              f"accuracy {row['accuracy']:.4f}")
    print(json.dumps(timings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
