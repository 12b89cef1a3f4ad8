"""How often a stream's pieces leave (the generator's `stream_interval_ms`) against aggregate tokens/s.

    .venv/bin/python benchmarks/stream_interval.py --workdir runs/bench/smollm2-build --out runs/bench/stream_interval

SmolLM2-135M-Instruct int4 (the exporter's own build), one continuously batching generator (8 running) on the
embedded Triton; each request asks for its own `stream_interval_ms`, so every interval runs on the same server.
At 1 and 8 concurrent callers (each streaming 3 answers of exactly 64 tokens one after another, `tuneship bench`'s
generator load) the intervals take turns, in reverse order every other round; the median round is reported.

Writes OUT.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generation_concurrency import NEW_TOKENS, STREAMS_PER_CALLER, build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench/stream_interval"))
    parser.add_argument("--workdir", type=Path, default=None, help="reuse a build (default: a temporary folder)")
    parser.add_argument("--levels", default="1,8")
    parser.add_argument("--intervals", default="0,20,50,100", help="stream_interval_ms values")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    intervals = [int(x) for x in args.intervals.split(",")]

    from tuneship.client.bench import builtin_reviews
    from tuneship.client.generation_bench import format_level, review_prompts, run_generation_bench
    from tuneship.deploy import ServeOptions, TritonServer
    from tuneship.exporter.instruct.build import GenaiVariant
    from tuneship.exporter.instruct.options import GenerationServing
    from tuneship.exporter.instruct.publishing import publish_generator

    prompts = review_prompts(builtin_reviews())
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or Path(scratch) / "build"
        workdir.mkdir(parents=True, exist_ok=True)
        folder = workdir / "cpu-int4"
        variant = GenaiVariant("cpu-int4", "int4", folder, "cpu") if (folder / "genai_config.json").is_file() \
            else build(workdir)
        repository = Path(scratch) / "repository"
        publish_generator(repository, "chat", variant, GenerationServing(max_concurrency=8, max_queue=16), keep=None)
        with TritonServer(ServeOptions(model_repository=repository, grpc_port=0, http_port=0,
                                       metrics_port=0)) as server:
            for round_ in range(args.rounds):
                for level in levels:
                    for interval in intervals if round_ % 2 == 0 else intervals[::-1]:
                        time.sleep(1.0)
                        result = asyncio.run(run_generation_bench(
                            server.grpc_url, "chat", [level], prompts, NEW_TOKENS, STREAMS_PER_CALLER,
                            timeout_s=600, progress=False, params={"stream_interval_ms": interval}))[0]
                        results.setdefault(f"{level} {interval}", []).append(result.aggregate_tokens_per_second)
                        print(f"{interval:>5} ms {format_level(result)}", flush=True)
    summary = {"aggregate_tokens_per_second_median": {k: statistics.median(v) for k, v in results.items()},
               "every_round": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary["aggregate_tokens_per_second_median"], indent=2))


if __name__ == "__main__":
    main()
