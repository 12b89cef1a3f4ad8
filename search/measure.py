"""Served latency, measured for real: every trial's published model is loaded into one embedded Triton (explicit
model control), measured with the project's load generators on real items, and unloaded.

A classifier's p99 is at batch 1 with one request in flight, its throughput items/s at --concurrency; a
generator's p99 is time to first token with one stream, its throughput tokens/s over --concurrency streams.
Served memory is what the server (and its Python stubs) grew by while the model was loaded and busy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tuneship.tasks import Task


@dataclass(frozen=True)
class Served:
    p99_ms: float
    throughput: float
    """Items per second (a generator: tokens per second) at --concurrency."""
    served_mb: float
    errors: int = 0


class Measurer(Protocol):
    """What a search measures a published trial with (tests fix the figures with their own)."""

    def __call__(self, model: str, task: Task) -> Served: ...

    def close(self) -> None: ...


def _rss_mb(pids: Sequence[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


class TritonMeasurer:
    """One explicit-mode server over the search's repository, started at the first trial and kept."""

    def __init__(self, repository: Path, items: Sequence[Any], concurrency: int, window_s: float) -> None:
        self.repository = repository
        self.items = list(items)
        self.concurrency = concurrency
        self.window_s = window_s
        self.server: Any = None

    def _start(self) -> Any:
        from tuneship.deploy import ServeOptions, TritonServer

        if self.server is None or not self.server.running:
            self.repository.mkdir(parents=True, exist_ok=True)
            self.server = TritonServer(ServeOptions(model_repository=self.repository, grpc_port=0, http_port=0,
                                                    metrics_port=0, model_control_mode="explicit",
                                                    load_models=(), heal=False)).start()
        return self.server

    def _pids(self) -> list[int]:
        from tuneship.deploy.stubs import list_stubs

        pid = self.server.pid
        return [] if pid is None else [pid, *(stub.pid for stub in list_stubs(pid))]

    def __call__(self, model: str, task: Task) -> Served:
        from tuneship.client import TritonClient

        server = self._start()
        before = _rss_mb(self._pids())
        with TritonClient(server.grpc_url) as client:
            client.load_model(model)
            try:
                if task.generates:
                    p99, throughput, errors = self._generator(server.grpc_url, model)
                else:
                    p99, throughput, errors = self._classifier(server.grpc_url, model)
                served = max(0.0, _rss_mb(self._pids()) - before)
            finally:
                client.unload_model(model)
        return Served(p99_ms=round(p99, 2), throughput=round(throughput, 1), served_mb=round(served, 1),
                      errors=errors)

    def _classifier(self, url: str, model: str) -> tuple[float, float, int]:
        from tuneship.client import run_bench

        single, loaded = asyncio.run(run_bench(url, model, [1, self.concurrency], self.items, 1, self.window_s,
                                               max_windows=3, progress=False))
        return single.p99_ms, loaded.texts_per_second, single.errors + loaded.errors

    def _generator(self, url: str, model: str) -> tuple[float, float, int]:
        from tuneship.client import run_generation_bench

        single, loaded = asyncio.run(run_generation_bench(url, model, [1, self.concurrency], self.items,
                                                          new_tokens=16, streams=2, progress=False))
        return single.ttft_p99_ms, loaded.aggregate_tokens_per_second, single.errors + loaded.errors

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def folder_mb(paths: Sequence[Path]) -> float:
    """The served model's size on disk: every file of its folders (graphs, weights, tokenizer)."""
    total = sum(f.stat().st_size for path in paths if path.exists() for f in path.rglob("*") if f.is_file())
    return round(total / 2**20, 2)

