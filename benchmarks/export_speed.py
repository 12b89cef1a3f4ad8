"""Export benchmark (BENCHMARKS.md): PyTorch eager vs tuneship's ONNX variants vs Optimum, one checkpoint, one run.

    bash benchmarks/setup_optimum_venv.sh   # once: optimum-onnx needs transformers < 4.58
    .venv/bin/python benchmarks/export_speed.py runs/bench/full --out runs/bench/export.json \\
        --optimum-python .venv-optimum/bin/python

Times `tuneship export --precision auto` end to end; builds every variant with the exporter's own
`build_variants` (int8 static included); has benchmarks/optimum_baseline.py build Optimum's models in its venv;
then, in this one process and ONNX Runtime, measures PyTorch eager, each tuneship variant (served the way the
exporter publishes it: same graph level) and each Optimum model (ONNX Runtime defaults, as its users run it)
round-robin at batch 1 and 32, sequence 128, on the same real texts and threads, plus accuracy on the
checkpoint's eval texts. Writes JSON and a PNG chart next to --out.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from onnx_timing import benchmark_arguments, interleaved_medians, ort_accuracy, token_batch


def optimum_option(parser: Any) -> None:
    parser.add_argument("--optimum-python", type=Path, default=None,
                        help="python of a venv with optimum-onnx (benchmarks/setup_optimum_venv.sh)")


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    names = [row["variant"] for row in rows]
    colors = ["#888" if "pytorch" in n else "#1f77b4" if "tuneship" in n else "#ff7f0e" for n in names]
    for axis, key, title in ((axes[0], "speedup_b1", "batch 1"), (axes[1], "speedup_b32", "batch 32")):
        axis.barh(names, [row[key] for row in rows], color=colors)
        axis.axvline(1.0, color="black", linewidth=0.8)
        axis.set_title(f"{title}, sequence 128")
        axis.set_xlabel("throughput, x PyTorch eager")
    axes[0].invert_yaxis()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> int:
    args = benchmark_arguments(optimum_option)

    import onnxruntime as ort
    import torch

    from exporter.export import ExportOptions, _read_jsonl, build_variants
    from exporter.onnx_export import export_onnx
    from exporter.variants import session_options
    from trainer import load_classifier

    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {"threads": args.threads}
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
        fp32 = Path(scratch) / "fp32.onnx"
        names = export_onnx(model, tokenizer, fp32)
        variants = build_variants(ExportOptions(checkpoint=args.checkpoint, int8_modes=("dynamic", "static")),
                                  fp32, Path(scratch), model, tokenizer, names, info)
        sessions: dict[str, Any] = {}
        descriptions: dict[str, str] = {}
        for variant in variants:
            sessions[f"tuneship {variant.name}"] = ort.InferenceSession(
                str(variant.path), session_options(variant.graph_level, args.threads),
                providers=["CPUExecutionProvider"])
            descriptions[f"tuneship {variant.name}"] = variant.description
        if args.optimum_python:
            out = Path(scratch) / "optimum"
            subprocess.run([str(args.optimum_python), str(Path(__file__).parent / "optimum_baseline.py"),
                            str(args.checkpoint), "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
            built = json.loads((out / "models.json").read_text())
            results["optimum_timings"] = built["timings"]
            for name, path in built["paths"].items():
                sessions[name] = ort.InferenceSession(path, session_options(0, args.threads),
                                                      providers=["CPUExecutionProvider"])

        feeds = {b: token_batch(tokenizer, texts, b, 128, names) for b in (1, 32)}
        tensors = {b: {k: torch.from_numpy(v) for k, v in feeds[b].items()} for b in (1, 32)}
        medians: dict[int, dict[str, float]] = {}
        with torch.inference_mode():
            for batch, rounds, per_round in ((1, 10, 5), (32, 7, 1)):
                calls: dict[str, Callable[[], Any]] = {"pytorch eager": lambda b=batch: model(**tensors[b])}
                calls.update({name: (lambda s=s, b=batch: s.run(None, feeds[b])) for name, s in sessions.items()})
                medians[batch] = interleaved_medians(calls, rounds, per_round)
            correct = 0
            for start in range(0, len(texts), 64):
                encoded = tokenizer(texts[start:start + 64], truncation=True, max_length=info.max_length,
                                    padding=True, return_tensors="pt")
                correct += int((model(**encoded).logits.argmax(-1).numpy() == label_ids[start:start + 64]).sum())
        accuracy = {"pytorch eager": correct / len(texts)}
        for name, session in sessions.items():
            accuracy[name] = ort_accuracy(session, tokenizer, texts, label_ids, info.max_length, names)
    rows = []
    for name in medians[1]:
        rows.append({"variant": name, "b1_ms": medians[1][name] * 1000, "b32_ms": medians[32][name] * 1000,
                     "speedup_b1": medians[1]["pytorch eager"] / medians[1][name],
                     "speedup_b32": medians[32]["pytorch eager"] / medians[32][name],
                     "accuracy": accuracy[name], "description": descriptions.get(name, "")})
    results["rows"] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    plot(rows, args.out.with_suffix(".png"))
    for row in rows:
        print(f"{row['variant']:<42} b1 {row['b1_ms']:7.1f} ms ({row['speedup_b1']:.2f}x)  "
              f"b32 {row['b32_ms']:8.1f} ms ({row['speedup_b32']:.2f}x)  accuracy {row['accuracy']:.4f}")
    print(f"tuneship export (auto): {results['tuneship_export_seconds']}s, chose {results['tuneship_export_chosen']}")
    if "optimum_timings" in results:
        print(f"optimum: {results['optimum_timings']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
