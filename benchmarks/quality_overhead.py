"""Cost of the model-quality metrics on served throughput (BENCHMARKS.md): the same pipeline with them on and off.

    .venv/bin/python benchmarks/quality_overhead.py model_repository --model sentiment \
        --out runs/bench/quality_overhead.json

Copies the pipeline's four models twice into scratch repositories, one with `quality_metrics` "false" in the
tokenizer's and postprocess's configs, and measures each with the project's load generator (`tuneship bench`'s)
in turns, a fresh embedded server per turn, five rounds (medians): texts/s at concurrency 1 and 8, one text per request,
and Triton's compute time per execution of the tokenizer and postprocess models (where the metrics are counted;
far less noisy on a shared 2-core machine than throughput).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LEVELS = (1, 8)


def _copy(repository: Path, model: str, target: Path, quality: bool) -> Path:
    from tuneship.exporter.model_configs import parse_pbtxt, to_pbtxt

    for name in (model, f"{model}_tokenizer", f"{model}_model", f"{model}_postprocess"):
        shutil.copytree(repository / name, target / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in (f"{model}_tokenizer", f"{model}_postprocess"):
        path = target / name / "config.pbtxt"
        config = parse_pbtxt(path.read_text())
        config.parameters["quality_metrics"].string_value = "true" if quality else "false"
        path.write_text(to_pbtxt(config))
    return target


def _compute_us(client: Any, models: list[str]) -> dict[str, float]:
    """Triton's compute time per execution of each model (microseconds): where the metric updates happen."""
    figures = {}
    for entry in client.get_inference_statistics().get("model_stats", []):
        if entry["name"] in models:
            executions = int(entry.get("execution_count", 0)) or 1
            figures[entry["name"]] = int(entry["inference_stats"]["compute_infer"]["ns"]) / executions / 1000
    return figures


def _measure(repository: Path, model: str, texts: list[str]) -> dict[str, Any]:
    from tuneship.client import TritonClient
    from tuneship.client.bench import run_bench
    from tuneship.deploy import ServeOptions, TritonServer

    with TritonServer(ServeOptions(model_repository=repository, grpc_port=0, http_port=0, metrics_port=0)) as server:
        results = asyncio.run(run_bench(server.grpc_url, model, LEVELS, texts, progress=False))
        with TritonClient(server.grpc_url) as client:
            compute = _compute_us(client, [f"{model}_tokenizer", f"{model}_postprocess"])
    figures: dict[str, Any] = {str(r.concurrency): r.texts_per_second for r in results}
    figures["compute_us"] = compute
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repository", type=Path)
    parser.add_argument("--model", default="sentiment")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/quality_overhead.json"))
    parser.add_argument("--rounds", type=int, default=5, help="turns of on and off (medians are reported)")
    args = parser.parse_args()

    from tuneship.client.bench import builtin_reviews

    texts = builtin_reviews()
    runs: dict[str, dict[str, list[float]]] = {"on": {}, "off": {}}
    with tempfile.TemporaryDirectory() as scratch:
        repositories = {state: _copy(args.repository, args.model, Path(scratch) / state, state == "on")
                        for state in ("on", "off")}
        for round_ in range(args.rounds):
            for state in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
                figures = _measure(repositories[state], args.model, texts)
                compute = figures.pop("compute_us")
                print(f"round {round_ + 1} quality metrics {state}: "
                      + ", ".join(f"c{level} {rate:.1f} texts/s" for level, rate in figures.items())
                      + "; compute per execution " + ", ".join(f"{m} {us:.0f} us" for m, us in compute.items()),
                      flush=True)
                for level, rate in figures.items():
                    runs[state].setdefault(level, []).append(rate)
                for name, us in compute.items():
                    runs[state].setdefault(f"{name} compute us", []).append(us)
    result: dict[str, Any] = {"levels": {}, "rounds": runs}
    for level in runs["on"]:
        on, off = statistics.median(runs["on"][level]), statistics.median(runs["off"][level])
        if level.endswith("compute us"):  # more time is the overhead
            result["levels"][level] = {"on": round(on, 1), "off": round(off, 1),
                                       "overhead_percent": round(100 * (on - off) / off, 1)}
        else:
            result["levels"][level] = {"texts_per_second_on": round(on, 1), "texts_per_second_off": round(off, 1),
                                       "overhead_percent": round(100 * (off - on) / off, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["levels"], indent=2))


if __name__ == "__main__":
    main()
