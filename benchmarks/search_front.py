"""Issue 36's goal for `tuneship search`, read from a finished search (BENCHMARKS.md).

    .venv/bin/tuneship search --data rotten-tomatoes --max-train-samples 1500 --max-eval-samples 500 \
        --layers 3,4 --trials 20 --keep-all --output runs/search20
    .venv/bin/python benchmarks/search_front.py runs/search20 [--rounds 5]

The search's first trial is the defaults (what `tuneship train` and `tuneship export` give, on the same data
options). The goal: the front holds a model at least as accurate as it (within 0.5 point) and one at least 1.5x
faster served (p99 at batch 1) within 1 point of it. A search measures each trial once, as it finishes; here the
defaults' model and every front model are measured again on one embedded Triton in the same run, taking turns
(`--rounds` rounds, the median kept), so the speed-ups compare figures from one quiet stretch of the same machine.
Needs the search's models (--keep-all keeps the defaults' one when it is not on the front). Writes
benchmarks/results/search_front.json and copies the search's pareto.png beside it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine

RESULTS = Path(__file__).resolve().parent / "results"


def remeasure(search: Path, entries: list[dict[str, Any]], rounds: int, window: float) -> dict[int, float]:
    """Each entry's served model measured again, p99 at batch 1, the models taking turns; the median per model."""
    import asyncio
    import statistics

    from tuneship.client import TritonClient, builtin_reviews, run_bench
    from tuneship.deploy import ServeOptions, TritonServer

    repository = search / "repository"
    names = {entry["number"]: entry["metrics"]["model"] for entry in entries}
    missing = [name for name in names.values() if not (repository / name).is_dir()]
    if missing:
        raise SystemExit(f"{', '.join(missing)} not in {repository}: run the search with --keep-all")
    texts = builtin_reviews()
    figures: dict[int, list[float]] = {number: [] for number in names}
    with TritonServer(ServeOptions(model_repository=repository, grpc_port=0, http_port=0, metrics_port=0,
                                   model_control_mode="explicit", load_models=(), heal=False)) as server, \
            TritonClient(server.grpc_url) as client:
        for name in names.values():
            client.load_model(name)
        for round_ in range(rounds):
            for number, name in names.items():
                [level] = asyncio.run(run_bench(server.grpc_url, name, [1], texts, 1, window, max_windows=3,
                                                progress=False))
                figures[number].append(level.p99_ms)
            print(f"round {round_ + 1}/{rounds}: " + ", ".join(f"#{n} {v[-1]:.1f} ms" for n, v in figures.items()),
                  flush=True)
    return {number: round(statistics.median(values), 2) for number, values in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("search", type=Path, help="a finished search's --output")
    parser.add_argument("--rounds", type=int, default=5, help="turns each model takes being measured")
    parser.add_argument("--window", type=float, default=2.0, help="seconds per measurement window")
    args = parser.parse_args()
    pareto = json.loads((args.search / "pareto.json").read_text())
    default = pareto["default"]
    if default is None:
        raise SystemExit("the defaults' trial did not finish: no baseline")
    front = pareto["front"]
    again = remeasure(args.search, [default, *front], args.rounds, args.window)
    for entry in [default, *front]:
        entry["metrics"]["p99_ms_in_search"] = entry["metrics"]["p99_ms"]
        entry["metrics"]["p99_ms"] = again[entry["number"]]
    base_q, base_p99 = default["metrics"]["quality"], default["metrics"]["p99_ms"]
    accurate = [e for e in front if e["metrics"]["quality"] >= base_q - 0.005]
    fast = [e for e in front if e["metrics"]["quality"] >= base_q - 0.01
            and base_p99 / e["metrics"]["p99_ms"] >= 1.5]
    summary = {
        "machine": machine(),
        "trials": pareto["trials"],
        "default": {"number": default["number"], "quality": base_q, "p99_ms": base_p99,
                    "p99_ms_in_search": default["metrics"]["p99_ms_in_search"]},
        "remeasured": f"{args.rounds} rounds taking turns on one embedded Triton, {args.window:g} s windows, median",
        "front": [{"number": e["number"], "model": e["choice"]["model"], "method": e["choice"]["method"],
                   "precision": e["metrics"]["precision"], "quality": e["metrics"]["quality"],
                   "p99_ms": e["metrics"]["p99_ms"], "p99_ms_in_search": e["metrics"]["p99_ms_in_search"],
                   "speedup": round(base_p99 / e["metrics"]["p99_ms"], 2),
                   "throughput": e["metrics"]["throughput"], "size_mb": e["metrics"]["size_mb"]} for e in front],
        "goal_as_accurate": bool(accurate),
        "goal_1_5x_faster_within_1_point": bool(fast),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "search_front.json").write_text(json.dumps(summary, indent=2) + "\n")
    if (args.search / "pareto.png").is_file():
        shutil.copy(args.search / "pareto.png", RESULTS / "search_front.png")
    print(f"defaults (trial {default['number']}): quality {base_q:.4f}, p99 {base_p99:.1f} ms")
    for entry in summary["front"]:
        print(f"  front #{entry['number']:<3} {entry['model']:<12} {entry['method']:<14} {entry['precision']:<14} "
              f"quality {entry['quality']:.4f}  p99 {entry['p99_ms']:.1f} ms ({entry['speedup']}x)")
    print(f"as accurate (within 0.5 point): {summary['goal_as_accurate']}; 1.5x faster within 1 point: "
          f"{summary['goal_1_5x_faster_within_1_point']}")


if __name__ == "__main__":
    main()
