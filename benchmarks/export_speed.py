"""Export benchmark (BENCHMARKS.md): PyTorch eager vs tuneship's ONNX variants vs Optimum, one checkpoint, one run.

    bash benchmarks/setup_optimum_venv.sh   # once: optimum-onnx needs transformers < 4.58
    .venv/bin/python benchmarks/export_speed.py runs/bench/full --out runs/bench/export.json \\
        --optimum-python .venv-optimum/bin/python

Times `tuneship export --precision auto` end to end; builds every variant with the exporter's own
`build_variants` (int8 static included); has benchmarks/optimum_baseline.py build Optimum's models in its venv;
then, in this one process and ONNX Runtime, measures PyTorch eager, each tuneship variant (served the way the
exporter publishes it: same graph level) and each Optimum model (ONNX Runtime defaults, as its users run it)
round-robin at batch 1 and 32, sequence 128, on the same real texts and threads (reviews padded to 128, and
long texts with no padding), plus accuracy on the checkpoint's eval texts. Writes JSON and a PNG chart next
to --out.
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

    panels = (("speedup_b1", "batch 1, reviews padded to 128"), ("speedup_b32", "batch 32, reviews padded to 128"),
              ("speedup_b1_full", "batch 1, 128 real tokens"), ("speedup_b32_full", "batch 32, 128 real tokens"))
    figure, axes = plt.subplots(2, 2, figsize=(13, 8), sharey=True)
    names = [row["variant"] for row in rows]
    colors = ["#888" if "pytorch" in n else "#1f77b4" if "tuneship" in n else "#ff7f0e" for n in names]
    for axis, (key, title) in zip(axes.flat, panels, strict=True):
        axis.barh(names, [row[key] for row in rows], color=colors)
        axis.axvline(1.0, color="black", linewidth=0.8)
        axis.set_title(title)
        axis.set_xlabel("throughput, x PyTorch eager")
    axes[0][0].invert_yaxis()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> int:
    args = benchmark_arguments(optimum_option)

    import onnxruntime as ort
    import torch

    from tuneship.exporter import TextExportOptions
    from tuneship.exporter.text.build import build_variants
    from tuneship.exporter.text.onnx_export import export_onnx
    from tuneship.exporter.text.texts import read_jsonl
    from tuneship.exporter.variants import session_options
    from tuneship.trainer import load_classifier

    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {"threads": args.threads}
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tuneship", "export", str(args.checkpoint), "--repository",
                        f"{scratch}/repo", "--name", "bench"], check=True, stdout=subprocess.DEVNULL)
        results["tuneship_export_seconds"] = round(time.perf_counter() - started, 1)
        report = json.loads(Path(f"{scratch}/repo/bench/export_report.json").read_text())
        results["tuneship_export_chosen"] = report["chosen"]

        model, tokenizer, info = load_classifier(args.checkpoint)
        texts, labels = read_jsonl(info.eval_data, args.eval_samples)
        label_ids = [info.labels.index(x) for x in labels]
        fp32 = Path(scratch) / "fp32.onnx"
        names = export_onnx(model, tokenizer, fp32)
        variants = build_variants(TextExportOptions(checkpoint=args.checkpoint, int8_modes=("dynamic", "static")),
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

        # Reviews padded to 128 (the benchmark's shape; about three tokens in four are padding), and long
        # texts that fill all 128 positions (no padding: what is left when padding removal cannot help).
        long_texts = [" ".join([text] * 12) for text in texts]
        feeds = {(b, kind): token_batch(tokenizer, source, b, 128, names)
                 for b in (1, 32) for kind, source in (("reviews", texts), ("full", long_texts))}
        tensors = {key: {k: torch.from_numpy(v) for k, v in feed.items()} for key, feed in feeds.items()}
        medians: dict[tuple[int, str], dict[str, float]] = {}
        with torch.inference_mode():
            for key, rounds, per_round in (((1, "reviews"), 10, 5), ((32, "reviews"), 7, 1), ((1, "full"), 6, 5),
                                           ((32, "full"), 5, 1)):
                calls: dict[str, Callable[[], Any]] = {"pytorch eager": lambda k=key: model(**tensors[k])}
                calls.update({name: (lambda s=s, k=key: s.run(None, feeds[k])) for name, s in sessions.items()})
                medians[key] = interleaved_medians(calls, rounds, per_round)
            correct = 0
            for start in range(0, len(texts), 64):
                encoded = tokenizer(texts[start:start + 64], truncation=True, max_length=info.max_length,
                                    padding=True, return_tensors="pt")
                correct += int((model(**encoded).logits.argmax(-1).numpy() == label_ids[start:start + 64]).sum())
        accuracy = {"pytorch eager": correct / len(texts)}
        for name, session in sessions.items():
            accuracy[name] = ort_accuracy(session, tokenizer, texts, label_ids, info.max_length, names)
    rows = []
    for name in medians[(1, "reviews")]:
        row: dict[str, Any] = {"variant": name, "accuracy": accuracy[name], "description": descriptions.get(name, "")}
        for (batch, kind), times in medians.items():
            suffix = f"b{batch}" if kind == "reviews" else f"b{batch}_full"
            row[f"{suffix}_ms"] = times[name] * 1000
            row[f"speedup_{suffix}"] = times["pytorch eager"] / times[name]
        rows.append(row)
    results["rows"] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    plot(rows, args.out.with_suffix(".png"))
    for row in rows:
        print(f"{row['variant']:<42} b1 {row['b1_ms']:6.1f} ms ({row['speedup_b1']:.2f}x)  "
              f"b32 {row['b32_ms']:7.1f} ms ({row['speedup_b32']:.2f}x)  accuracy {row['accuracy']:.4f}  | no padding: "
              f"b1 {row['b1_full_ms']:6.1f} ({row['speedup_b1_full']:.2f}x)  "
              f"b32 {row['b32_full_ms']:7.1f} ({row['speedup_b32_full']:.2f}x)")
    print(f"tuneship export (auto): {results['tuneship_export_seconds']}s, chose {results['tuneship_export_chosen']}")
    if "optimum_timings" in results:
        print(f"optimum: {results['optimum_timings']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
