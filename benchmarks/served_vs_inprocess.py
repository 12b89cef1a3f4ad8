"""The served path against the same model in one Python process (issue 13's table), before and after
`tuneship tune`, in one run:

    .venv/bin/python benchmarks/served_vs_inprocess.py model_repository --model sentiment \
        --out runs/bench/served --latency-budget-ms 60

In-process: the published tokenizer.json (the `tokenizers` library, padded to the longest text, truncated at the
tokenizer model's max_length) and model.onnx (ONNX Runtime, the graph level its config asks for, all cores),
softmax included: one text at a time (latency percentiles and texts/s), batches of 4 (what four callers can
at best be merged into) and of 32 (texts/s).
Served: the embedded Triton on a copy of the repository, `tuneship bench`'s load generator, one text per request,
concurrency 1, 4, 16 and 32: texts/s, p50/p95/p99 and Triton's queue and compute time per request. "before" is the
repository as exported; "after" is the same copy once `tuneship tune` (a small grid: max batch 64, queue delay 0 or
2000 us, 1 or 2 instances, 0 or 1 intra-op threads, measured at concurrency 4) has written its choice.
With `--fused-repository` (the same checkpoint exported with `tuneship export --layout single` under the same
model name), the single-model layout is measured the same way, before and after its own tune, in the same run; the
results say whether its model.onnx is byte for byte the ensemble's.
Writes results.json, table.md and served_vs_inprocess.png into --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LEVELS = (1, 4, 16, 32)


def _latest(folder: Path) -> Path:
    return folder / str(max(int(p.name) for p in folder.iterdir() if p.name.isdigit()))


def in_process(repository: Path, model: str, texts: list[str], seconds: float) -> dict[str, Any]:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from tuneship.exporter.variants import session_options
    from tuneship.repository import parse_pbtxt

    tokenizer_config = parse_pbtxt((repository / f"{model}_tokenizer" / "config.pbtxt").read_text(encoding="utf-8"))
    model_config = parse_pbtxt((repository / f"{model}_model" / "config.pbtxt").read_text(encoding="utf-8"))
    tokenizer = Tokenizer.from_file(str(_latest(repository / f"{model}_tokenizer") / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=int(tokenizer_config.parameters["max_length"].string_value))
    tokenizer.enable_padding(pad_id=int(tokenizer_config.parameters["pad_token_id"].string_value),
                             pad_token=tokenizer_config.parameters["pad_token"].string_value)
    session = ort.InferenceSession(str(_latest(repository / f"{model}_model") / "model.onnx"),
                                   session_options(model_config.optimization.graph.level),
                                   providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def classify(batch: list[str]) -> np.ndarray[Any, Any]:
        encodings = tokenizer.encode_batch(batch)
        arrays = {"input_ids": [e.ids for e in encodings], "attention_mask": [e.attention_mask for e in encodings],
                  "token_type_ids": [e.type_ids for e in encodings]}
        logits = session.run(["logits"], {n: np.asarray(arrays[n], dtype=np.int64) for n in names})[0]
        exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return np.asarray(exp / exp.sum(axis=-1, keepdims=True))

    figures: dict[str, Any] = {}
    for batch in (1, 4, 32):
        classify(texts[:batch])
        latencies, done, started, i = [], 0, time.perf_counter(), 0
        while time.perf_counter() - started < seconds:
            chunk = [texts[(i + k) % len(texts)] for k in range(batch)]
            begin = time.perf_counter()
            classify(chunk)
            latencies.append((time.perf_counter() - begin) * 1000)
            done += batch
            i += batch
        elapsed = time.perf_counter() - started
        figures[f"batch {batch}"] = {
            "texts_per_second": round(done / elapsed, 1),
            "p50_ms": round(statistics.median(latencies), 2),
            "p95_ms": round(float(np.percentile(latencies, 95)), 2),
            "p99_ms": round(float(np.percentile(latencies, 99)), 2)}
    return figures


def served(repository: Path, model: str, texts: list[str], window: float) -> list[dict[str, Any]]:
    from tuneship.client.bench import run_bench
    from tuneship.deploy import ServeOptions, TritonServer

    with TritonServer(ServeOptions(model_repository=repository, grpc_port=0, http_port=0, metrics_port=0)) as server:
        results = asyncio.run(run_bench(server.grpc_url, model, LEVELS, texts, window_s=window, progress=False))
    return [{"concurrency": r.concurrency, "texts_per_second": round(r.texts_per_second, 1),
             "p50_ms": round(r.p50_ms, 2), "p95_ms": round(r.p95_ms, 2), "p99_ms": round(r.p99_ms, 2),
             "queue_ms": round(r.server_queue_ms, 2), "compute_ms": round(r.server_compute_ms, 2),
             "errors": r.errors, "stable": r.stable} for r in results]


PHASES = {"before": "served, before tune", "after": "served, after tune",
          "fused_before": "served fused, before tune", "fused_after": "served fused, after tune"}


def table(results: dict[str, Any]) -> str:
    lines = ["| path | concurrency / batch | texts/s | p50 ms | p95 ms | p99 ms | Triton queue ms | Triton compute ms"
             " |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for batch, f in results["in_process"].items():
        lines.append(f"| in-process | {batch} | {f['texts_per_second']} | {f['p50_ms']} | {f['p95_ms']} | "
                     f"{f['p99_ms']} | - | - |")
    for phase, title in PHASES.items():
        for r in results.get(phase, []):
            lines.append(f"| {title} | concurrency {r['concurrency']} | {r['texts_per_second']} | "
                         f"{r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['queue_ms']} | {r['compute_ms']} |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(8, 5), dpi=100)
    for phase, style in (("before", "o-"), ("after", "s-"), ("fused_before", "o--"), ("fused_after", "s--")):
        rows = results.get(phase, [])
        if not rows:
            continue
        axis.plot([r["texts_per_second"] for r in rows], [r["p99_ms"] for r in rows], style,
                  label=f"{PHASES[phase]} (p99)")
        for r in rows:
            axis.annotate(f"c={r['concurrency']}", (r["texts_per_second"], r["p99_ms"]), textcoords="offset points",
                          xytext=(4, 4), fontsize=8)
    for batch, marker in (("batch 1", "^"), ("batch 4", "D"), ("batch 32", "v")):
        if batch not in results["in_process"]:
            continue
        f = results["in_process"][batch]
        axis.scatter([f["texts_per_second"]], [f["p99_ms"]], marker=marker, s=90, color="black",
                     label=f"in-process, {batch} (p99)", zorder=4)
    axis.set_xlabel("texts/s")
    axis.set_ylabel("p99 latency (ms)")
    axis.set_xlim(left=0)
    axis.set_ylim(bottom=0)
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _tune_and_measure(repository: Path, args: argparse.Namespace, texts: list[str], results: dict[str, Any],
                      phase: str, chart: Path) -> dict[str, Any]:
    """`tuneship tune`'s small grid at concurrency 4 on `repository`, then the served levels again."""
    from tuneship.tuning import TuneOptions, save, tune

    report = tune(TuneOptions(model=args.model, latency_budget_ms=args.latency_budget_ms, repository=repository,
                              percentile=99, concurrency=4, window_s=args.window, max_batch_sizes=(64,),
                              queue_delays_us=(0, 2000), instance_counts=(1, 2), intra_op_threads=(0, 1),
                              texts=texts))
    save(report, repository)
    shutil.copy2(repository / args.model / "tuning.png", chart)
    results[phase] = served(repository, args.model, texts, args.window)
    return {"chosen": report.chosen.candidate.describe() if report.chosen else None, "reason": report.reason}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repository", type=Path)
    parser.add_argument("--model", default="sentiment")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/served"))
    parser.add_argument("--latency-budget-ms", type=float, default=60.0, help="tune: p99 budget at concurrency 4")
    parser.add_argument("--seconds", type=float, default=8.0, help="in-process measuring time per batch size")
    parser.add_argument("--window", type=float, default=2.0, help="load generator window")
    parser.add_argument("--fused-repository", type=Path, default=None,
                        help="the same checkpoint exported with --layout single (same model name): measured too")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    from tuneship.client.bench import builtin_reviews

    texts = builtin_reviews()
    results: dict[str, Any] = {"model": args.model, "texts": len(texts)}
    with tempfile.TemporaryDirectory(prefix="served-bench-") as scratch:
        copy = Path(scratch) / "repository"
        shutil.copytree(args.repository, copy, ignore=shutil.ignore_patterns("__pycache__", ".*"))
        results["in_process"] = in_process(copy, args.model, texts, args.seconds)
        results["before"] = served(copy, args.model, texts, args.window)
        results["tune"] = _tune_and_measure(copy, args, texts, results, "after", args.out / "tuning.png")
        if args.fused_repository is not None:
            fused = Path(scratch) / "single"
            shutil.copytree(args.fused_repository, fused, ignore=shutil.ignore_patterns("__pycache__", ".*"))
            results["fused_same_graph"] = ((_latest(fused / args.model) / "model.onnx").read_bytes() ==
                                           (_latest(copy / f"{args.model}_model") / "model.onnx").read_bytes())
            results["fused_before"] = served(fused, args.model, texts, args.window)
            results["fused_tune"] = _tune_and_measure(fused, args, texts, results, "fused_after",
                                                      args.out / "tuning_fused.png")
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (args.out / "table.md").write_text(table(results), encoding="utf-8")
    plot(results, args.out / "served_vs_inprocess.png", f"{args.model}: served vs in-process, one text per request")
    print(table(results))
    print(json.dumps({k: results[k] for k in ("tune", "fused_tune", "fused_same_graph") if k in results}, indent=2))
    print(f"wrote {args.out}/results.json, table.md, served_vs_inprocess.png, tuning.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
