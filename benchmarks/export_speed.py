"""Export benchmark (BENCHMARKS.md): PyTorch eager vs tuneship's ONNX variants on one checkpoint.

    .venv/bin/python benchmarks/export_speed.py runs/sentiment --out runs/bench/export.json

Times `tuneship export --precision auto` end to end, then measures PyTorch eager and each variant the
exporter built (re-created here with the exporter's own functions) at batch 1 and 32, sequence 128,
with the same real texts and threads, and their accuracy on the checkpoint's eval texts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from onnx_timing import benchmark_arguments, ort_accuracy, ort_session, time_call, token_batch


def main() -> int:
    args = benchmark_arguments()

    import torch

    from exporter.export import _read_jsonl
    from exporter.onnx_export import export_onnx
    from exporter.variants import optimize_transformer, quantize_int8_dynamic, quantize_int8_static
    from trainer import load_classifier

    torch.set_num_threads(args.threads)
    results: dict[str, object] = {"threads": args.threads}
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "deploy.dispatch", "export", str(args.checkpoint), "--repository",
                        f"{scratch}/repo", "--name", "bench"], check=True, stdout=subprocess.DEVNULL)
        results["tuneship_export_seconds"] = round(time.perf_counter() - started, 1)
        report = json.loads(Path(f"{scratch}/repo/bench/export_report.json").read_text())
        results["tuneship_export_chosen"] = report["chosen"]

        model, tokenizer, info = load_classifier(args.checkpoint)
        texts, labels = _read_jsonl(info.eval_data, args.eval_samples)
        label_ids = [info.labels.index(x) for x in labels]
        names = export_onnx(model, tokenizer, Path(scratch) / "fp32.onnx")
        config = model.config
        paths = {"fp32": f"{scratch}/fp32.onnx"}
        paths["fp32-optimized"] = str(optimize_transformer(Path(paths["fp32"]), Path(scratch) / "opt.onnx", "bert",
                                                           config.num_attention_heads, config.hidden_size))
        paths["int8-dynamic"] = str(quantize_int8_dynamic(Path(paths["fp32-optimized"]), Path(scratch) / "dyn.onnx",
                                                          per_channel=False))
        calibration = [token_batch(tokenizer, texts[i:i + 16], 16, 64, names) for i in range(0, 128, 16)]
        paths["int8-static"] = str(quantize_int8_static(Path(paths["fp32"]), Path(scratch) / "static.onnx",
                                                        calibration, per_channel=False))
        rows = []
        feeds = {b: token_batch(tokenizer, texts, b, 128, names) for b in (1, 32)}
        with torch.inference_mode():
            torch_times = {b: time_call(lambda b=b: model(**{k: torch.from_numpy(v) for k, v in feeds[b].items()}),
                                        repeats=20 if b == 1 else 5) for b in (1, 32)}
            correct = 0
            for start in range(0, len(texts), 64):
                batch = tokenizer(texts[start:start + 64], truncation=True, max_length=info.max_length,
                                  padding=True, return_tensors="pt")
                correct += int((model(**batch).logits.argmax(-1).numpy() ==
                                label_ids[start:start + 64]).sum())
        rows.append({"variant": "pytorch-eager", "b1_ms": torch_times[1] * 1000, "b32_ms": torch_times[32] * 1000,
                     "accuracy": correct / len(texts), "size_mb": None})
        for name, path in paths.items():
            session = ort_session(path, args.threads)
            times = {b: time_call(lambda b=b, s=session: s.run(None, feeds[b]), repeats=20 if b == 1 else 5)
                     for b in (1, 32)}
            rows.append({"variant": name, "b1_ms": times[1] * 1000, "b32_ms": times[32] * 1000,
                         "accuracy": ort_accuracy(session, tokenizer, texts, label_ids, info.max_length, names),
                         "size_mb": Path(path).stat().st_size / 1e6})
    base = rows[0]
    for row in rows:
        row["speedup_b1"] = base["b1_ms"] / row["b1_ms"]
        row["speedup_b32"] = base["b32_ms"] / row["b32_ms"]
    results["rows"] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    for row in rows:
        print(f"{row['variant']:<16} b1 {row['b1_ms']:7.1f} ms ({row['speedup_b1']:.2f}x)  "
              f"b32 {row['b32_ms']:8.1f} ms ({row['speedup_b32']:.2f}x)  accuracy {row['accuracy']:.4f}")
    print(f"tuneship export (auto): {results['tuneship_export_seconds']}s, chose {results['tuneship_export_chosen']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
