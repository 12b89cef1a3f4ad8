"""Client benchmark (BENCHMARKS.md): is the load generator the bottleneck?

    .venv/bin/python benchmarks/client_overhead.py runs/bench/repo --model sentiment --out runs/bench/client.json

Starts the embedded server on the repository, then drives the ensemble at concurrency 16 for the same time
with (1) `tuneship bench`'s asyncio load generator and (2) plain tritonclient calls in a loop on 16 threads,
recording throughput, latency and the CPU time of the client process and of the server's processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _process_tree_cpu(pid: int) -> float:
    """User + system seconds of a process and its children (Triton and its Python stubs)."""
    ticks = 0
    pids = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:  # parent pid
                pids.append(int(entry.name))
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    import os

    return ticks / os.sysconf("SC_CLK_TCK")


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def plain_tritonclient(url: str, model: str, texts: list[str], concurrency: int, seconds: float) -> dict[str, float]:
    import numpy as np
    import tritonclient.grpc as grpcclient

    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    lock = threading.Lock()

    def worker(offset: int) -> None:
        client = grpcclient.InferenceServerClient(url)
        i = offset
        while time.perf_counter() < stop:
            data = np.array([[texts[i % len(texts)].encode()]], dtype=np.object_)
            tensor = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
            tensor.set_data_from_numpy(data)
            started = time.perf_counter()
            client.infer(model, [tensor])
            with lock:
                latencies.append(time.perf_counter() - started)
            i += 1
        client.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ordered = sorted(latencies)
    return {"requests": len(latencies), "throughput_rps": len(latencies) / seconds,
            "p50_ms": 1000 * statistics.median(ordered), "p95_ms": 1000 * ordered[int(0.95 * (len(ordered) - 1))]}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("repository", type=Path)
    parser.add_argument("--model", default="sentiment")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from tuneship.client.bench import builtin_reviews, run_bench
    from tuneship.deploy import ServeOptions, TritonServer

    texts = builtin_reviews()
    results = {}
    with TritonServer(ServeOptions(model_repository=args.repository, grpc_port=0, http_port=0,
                                   metrics_port=0)) as server:
        pid = server._process.pid if server._process else 0
        plain_tritonclient(server.grpc_url, args.model, texts, args.concurrency, 3.0)  # warm-up
        for mode in ("tuneship-bench", "plain-tritonclient"):
            client_before, server_before, started = _self_cpu(), _process_tree_cpu(pid), time.perf_counter()
            if mode == "tuneship-bench":
                windows = max(3, int(args.seconds / 2))
                level = asyncio.run(run_bench(server.grpc_url, args.model, [args.concurrency], texts, 1, 2.0,
                                              windows, 0.0, 30.0, progress=False))[0]
                figures = {"requests": level.requests, "throughput_rps": level.throughput_rps,
                           "p50_ms": level.p50_ms, "p95_ms": level.p95_ms}
            else:
                figures = plain_tritonclient(server.grpc_url, args.model, texts, args.concurrency, args.seconds)
            elapsed = time.perf_counter() - started
            figures["client_cpu_percent"] = 100 * (_self_cpu() - client_before) / elapsed
            figures["server_cpu_percent"] = 100 * (_process_tree_cpu(pid) - server_before) / elapsed
            results[mode] = {k: round(v, 2) for k, v in figures.items()}
            print(mode, json.dumps(results[mode]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"concurrency": args.concurrency, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
