"""Where the two cores go while a served classifier answers four callers (issue 13): the Triton server process
(gRPC front end, scheduler), its Python-backend stubs (tokenizer, ONNX Runtime, postprocess) and the load generator.

    .venv/bin/python benchmarks/cpu_split.py runs/bench/fused-repo --model sentiment [--intra-op-threads 1]

Serves a copy of the repository on the embedded Triton, warms it, then runs `tuneship bench`'s load generator at
concurrency 4 (one text per request) and reads each process's CPU time from /proc before and after: CPU per
process as a share of one core, and the stubs' CPU milliseconds per text (compare with in-process: two cores for
the measured texts/s). `--intra-op-threads` sets the ONNX Runtime thread count of the model that runs the graph.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repository", type=Path)
    parser.add_argument("--model", default="sentiment")
    parser.add_argument("--intra-op-threads", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=3.0, help="load generator window (two windows)")
    args = parser.parse_args()

    from tuneship.client.bench import builtin_reviews, run_bench
    from tuneship.deploy import ServeOptions, TritonServer
    from tuneship.deploy.stubs import list_stubs
    from tuneship.repository import graph_model, parse_pbtxt, to_pbtxt

    texts = builtin_reviews()
    with tempfile.TemporaryDirectory(prefix="cpu-split-") as scratch:
        root = Path(scratch) / "repository"
        shutil.copytree(args.repository, root, ignore=shutil.ignore_patterns("variants", "__pycache__", ".*"))
        if args.intra_op_threads is not None:
            path = root / graph_model(root, args.model) / "config.pbtxt"
            config = parse_pbtxt(path.read_text(encoding="utf-8"))
            config.parameters["intra_op_thread_count"].string_value = str(args.intra_op_threads)
            path.write_text(to_pbtxt(config), encoding="utf-8")
        with TritonServer(ServeOptions(model_repository=root, grpc_port=0, http_port=0, metrics_port=0,
                                       heal=False)) as server:
            assert server.pid is not None
            asyncio.run(run_bench(server.grpc_url, args.model, [4], texts, window_s=1.0, max_windows=1,
                                  progress=False))
            stubs = [stub.pid for stub in list_stubs(server.pid)]

            def sample() -> dict[str, float]:
                return {"server": cpu_seconds(server.pid or 0), "stubs": sum(cpu_seconds(p) for p in stubs),
                        "load generator": cpu_seconds(os.getpid())}

            before, started = sample(), time.monotonic()
            [result] = asyncio.run(run_bench(server.grpc_url, args.model, [4], texts, window_s=args.seconds,
                                             max_windows=2, progress=False))
            wall, after = time.monotonic() - started, sample()
    shares = {name: round(100 * (after[name] - before[name]) / wall, 1) for name in before}
    row = {"repository": str(args.repository), "model": args.model, "intra_op_threads": args.intra_op_threads,
           "stubs": len(stubs), "texts_per_second": round(result.texts_per_second, 1),
           "cpu_percent_of_one_core": shares,
           "stub_cpu_ms_per_text": round(10 * shares["stubs"] / result.texts_per_second, 2)}
    print(json.dumps(row))


if __name__ == "__main__":
    main()
