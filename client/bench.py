"""Closed-loop load generator: N concurrent callers, measured in windows until the figures are stable."""

from __future__ import annotations

import asyncio
import csv
import json
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from tuneship.client.aio_client import AsyncTritonClient
from tuneship.client.errors import PermissionDeniedError, TritonError
from tuneship.client.options import ClientOptions
from tuneship.client.text_classifier import text_request
from tuneship.png import save_png


def builtin_reviews() -> list[str]:
    """A few dozen short movie reviews shipped with the client, for load that looks like real traffic."""
    text = resources.files("tuneship.client").joinpath("sample_reviews.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


@dataclass
class LevelResult:
    concurrency: int
    requests: int
    errors: int
    throughput_rps: float
    texts_per_second: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    windows: int
    stable: bool
    client_cpu_percent: float
    server_queue_ms: float = 0.0
    server_compute_ms: float = 0.0
    server_models: dict[str, dict[str, float]] = field(default_factory=dict)


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _within(values: Sequence[float], tolerance: float) -> bool:
    mean = statistics.fmean(values)
    return mean > 0 and all(abs(v - mean) <= tolerance * mean for v in values)


def _server_split(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per model: average queue and compute time (ms) per request between two statistics snapshots."""
    def index(stats: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {f"{m['name']}:{m.get('version', '')}": m for m in stats.get("model_stats", [])}

    old, new = index(before), index(after)
    split: dict[str, dict[str, float]] = {}
    for key, model in new.items():
        previous = old.get(key, {})

        def delta(path: str, field_name: str, model: dict[str, Any] = model,
                  previous: dict[str, Any] = previous) -> float:
            now = float(model.get("inference_stats", {}).get(path, {}).get(field_name, 0))
            then = float(previous.get("inference_stats", {}).get(path, {}).get(field_name, 0))
            return now - then

        count = delta("success", "count")
        if count <= 0:
            continue
        compute = sum(delta(p, "ns") for p in ("compute_input", "compute_infer", "compute_output"))
        split[model["name"]] = {"requests": count, "queue_ms": delta("queue", "ns") / count / 1e6,
                                "compute_ms": compute / count / 1e6}
    return split


def ensemble_split(split: dict[str, dict[str, float]], model: str) -> dict[str, float]:
    """Queue and compute time per request of `model`; for an ensemble, those of the models it is made of.

    An ensemble's own statistics show next to no queue or compute: its requests wait and run in its composing
    models (tuneship names them `<model>_tokenizer`, `<model>_model`, `<model>_postprocess`), so their times are
    summed. Other models that happened to run during the window are left out.
    """
    own = dict(split.get(model, {}))
    composing = [v for k, v in split.items() if k.startswith(f"{model}_")]
    if not composing:
        return own
    return {"requests": own.get("requests", 0.0), "queue_ms": sum(v["queue_ms"] for v in composing),
            "compute_ms": sum(v["compute_ms"] for v in composing)}


async def _statistics(client: AsyncTritonClient) -> dict[str, Any]:
    """Triton's statistics, or nothing where they are restricted to administrators (the server columns read 0)."""
    try:
        return await client.get_inference_statistics()
    except PermissionDeniedError:
        return {}


Encoder = Callable[[list[Any]], dict[str, np.ndarray[Any, Any]]]


def _encoder(metadata: dict[str, Any]) -> Encoder:
    """How requests are built: by the served model's task (the task table's encoder); texts by default."""
    from tuneship.tasks import load, task_of_metadata

    served = task_of_metadata(metadata)
    encoder: Encoder = load(served.encoder) if served is not None and served.classifies else text_request
    return encoder


async def _run_level(client: AsyncTritonClient, model: str, texts: Sequence[Any], batch_size: int, concurrency: int,
                     window_s: float, max_windows: int, tolerance: float, timeout_s: float,
                     encode: Encoder = text_request) -> LevelResult:
    latencies: list[tuple[float, float]] = []  # (finish time, latency s)
    errors = 0
    stop = asyncio.Event()
    cursor = 0

    async def caller() -> None:
        nonlocal errors, cursor
        while not stop.is_set():
            chunk = [texts[(cursor + i) % len(texts)] for i in range(batch_size)]
            cursor += batch_size
            started = time.perf_counter()
            try:
                await client.infer(model, encode(chunk), outputs=["LABEL", "PROBABILITIES"], timeout_s=timeout_s,
                                   validate=False)
            except TritonError:
                errors += 1
                continue
            finished = time.perf_counter()
            latencies.append((finished, finished - started))

    stats_before = await _statistics(client)
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    tasks = [asyncio.create_task(caller()) for _ in range(concurrency)]
    windows: list[tuple[float, float, list[float]]] = []
    stable = False
    try:
        for number in range(max_windows):
            begin = started + number * window_s
            await asyncio.sleep(max(0.0, begin + window_s - time.perf_counter()))
            window = [lat for t, lat in latencies if begin <= t < begin + window_s]
            windows.append((len(window) / window_s, _percentile(window, 95), window))
            recent = windows[-3:]
            if len(recent) == 3 and _within([w[0] for w in recent], tolerance) and \
                    _within([w[1] for w in recent], tolerance):
                stable = True
                break
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = time.perf_counter() - started
    usage_after = resource.getrusage(resource.RUSAGE_SELF)
    stats_after = await _statistics(client)
    cpu = (usage_after.ru_utime - usage_before.ru_utime) + (usage_after.ru_stime - usage_before.ru_stime)
    measured = [lat for w in windows[-3:] for lat in w[2]]
    throughput = statistics.fmean(w[0] for w in windows[-3:]) if windows else 0.0
    split = _server_split(stats_before, stats_after)
    top = ensemble_split(split, model)
    return LevelResult(
        concurrency=concurrency, requests=len(measured), errors=errors, throughput_rps=round(throughput, 2),
        texts_per_second=round(throughput * batch_size, 1),
        p50_ms=round(_percentile(measured, 50) * 1000, 2), p90_ms=round(_percentile(measured, 90) * 1000, 2),
        p95_ms=round(_percentile(measured, 95) * 1000, 2), p99_ms=round(_percentile(measured, 99) * 1000, 2),
        windows=len(windows), stable=stable, client_cpu_percent=round(100 * cpu / elapsed, 1),
        server_queue_ms=round(top.get("queue_ms", 0.0), 2), server_compute_ms=round(top.get("compute_ms", 0.0), 2),
        server_models={k: {m: round(v, 3) for m, v in d.items()} for k, d in split.items()},
    )


async def run_bench(url: str, model: str, concurrencies: Sequence[int], texts: Sequence[Any], batch_size: int = 1,
                    window_s: float = 2.0, max_windows: int = 10, tolerance: float = 0.10, timeout_s: float = 30.0,
                    options: ClientOptions | None = None, progress: bool = True) -> list[LevelResult]:
    """Measure each concurrency level in turn; stable when three windows agree within `tolerance`.

    `texts` are what one request row carries: texts, or encoded images (bytes) for an image classifier."""
    results = []
    async with AsyncTritonClient(url, options) as client:
        await client.wait_until_ready(model, timeout_s=min(timeout_s, 60.0))
        encode = _encoder(await client.get_model_metadata(model))
        for concurrency in concurrencies:
            result = await _run_level(client, model, texts, batch_size, concurrency, window_s, max_windows,
                                      tolerance, timeout_s, encode)
            results.append(result)
            if progress:
                print(format_row(result), flush=True)
    return results


HEADER = (f"{'conc':>5}{'req/s':>9}{'texts/s':>9}{'p50 ms':>9}{'p90 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}"
          f"{'queue ms':>10}{'compute ms':>12}{'client cpu':>12}  stable")


def format_row(r: LevelResult) -> str:
    return (f"{r.concurrency:>5}{r.throughput_rps:>9.1f}{r.texts_per_second:>9.1f}{r.p50_ms:>9.1f}{r.p90_ms:>9.1f}"
            f"{r.p95_ms:>9.1f}{r.p99_ms:>9.1f}{r.errors:>8}{r.server_queue_ms:>10.2f}{r.server_compute_ms:>12.2f}"
            f"{r.client_cpu_percent:>11.1f}%  {'yes' if r.stable else f'no ({r.windows} windows)'}")


def write_outputs(results: Sequence[LevelResult], prefix: Path, title: str) -> list[Path]:
    """CSV, JSON and a PNG of latency against throughput, written to prefix.{csv,json,png}."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    rows = [asdict(r) for r in results]
    json_path, csv_path, png_path = prefix.with_suffix(".json"), prefix.with_suffix(".csv"), prefix.with_suffix(".png")
    json_path.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        fields = [k for k in rows[0] if k != "server_models"] if rows else []
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    written = [json_path, csv_path]
    if save_png(lambda: latency_figure(results, title), png_path):
        written.append(png_path)
    return written


def latency_figure(results: Sequence[LevelResult], title: str) -> Any:
    """Latency percentiles against throughput, one point per concurrency level (a matplotlib Figure)."""
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(7, 4.5), dpi=100)
    throughput = [r.texts_per_second for r in results]
    for key, style in (("p50_ms", "o-"), ("p95_ms", "s--"), ("p99_ms", "^:")):
        axis.plot(throughput, [getattr(r, key) for r in results], style, label=key.replace("_ms", ""))
    unstable = [r for r in results if not r.stable]
    if unstable:  # a level whose windows never agreed: its figures are less trustworthy, and the chart says so
        axis.scatter([r.texts_per_second for r in unstable], [r.p95_ms for r in unstable], s=160, facecolors="none",
                     edgecolors="tab:red", linewidths=1.5, label="never stabilised", zorder=3)
    for r in results:
        axis.annotate(f"c={r.concurrency}", (r.texts_per_second, r.p95_ms), textcoords="offset points",
                      xytext=(4, 4), fontsize=8)
    # Room around the data so the last point and its label are never cut at the edge.
    axis.margins(x=0.12, y=0.12)
    axis.set_xlim(left=0)
    axis.set_ylim(bottom=0)
    axis.set_xlabel("throughput (texts/s)")
    axis.set_ylabel("latency (ms)")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc="upper left")
    fig.tight_layout()
    return fig
