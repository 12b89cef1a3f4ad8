"""Concurrent streams against a generator: time to first token, inter-token latency, tokens/s per concurrency.

Each level runs N callers at once, each streaming `streams` answers back to back (closed loop), every answer
exactly `new_tokens` long (`min_tokens` = `max_tokens`, so a model that would stop early cannot flatter a level).
Aggregate tokens/s is every token the level received over its wall time; per-stream figures are medians.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tuneship.client.aio_client import AsyncTritonClient
from tuneship.client.errors import TritonError
from tuneship.client.generator import AsyncGenerator, Prompt
from tuneship.client.options import ClientOptions
from tuneship.png import save_png

REVIEW_INSTRUCTION = "Is this review positive or negative?\n\n"


def review_prompts(reviews: Sequence[str]) -> list[Prompt]:
    """The shipped reviews as chat requests: realistic prompt lengths, one user turn each."""
    return [[{"role": "user", "content": REVIEW_INSTRUCTION + review}] for review in reviews]


@dataclass
class StreamLevel:
    concurrency: int
    streams: int
    errors: int
    seconds: float
    aggregate_tokens_per_second: float
    stream_tokens_per_second_p50: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    ttft_max_ms: float
    itl_p50_ms: float
    itl_p99_ms: float
    first_error: str = ""


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values (a level whose every stream failed)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


@dataclass
class _Stream:
    ttft_s: float
    gaps_s: list[float]
    tokens: int
    seconds: float


async def _one(generator: AsyncGenerator, prompt: Prompt, new_tokens: int, timeout_s: float,
               params: Mapping[str, Any] | None = None) -> _Stream:
    started = time.perf_counter()
    stamps: list[float] = []
    stream = generator.stream(prompt, max_tokens=new_tokens, min_tokens=new_tokens, timeout_s=timeout_s,
                              **(params or {}))
    async for _piece in stream:
        stamps.append(time.perf_counter())
    seconds = time.perf_counter() - started
    tokens = stream.generation.tokens if stream.generation is not None else len(stamps)
    first = stamps[0] - started if stamps else seconds
    return _Stream(first, [b - a for a, b in itertools.pairwise(stamps)], tokens, seconds)


async def run_level(generator: AsyncGenerator, prompts: Sequence[Prompt], concurrency: int, streams: int,
                    new_tokens: int, timeout_s: float, params: Mapping[str, Any] | None = None) -> StreamLevel:
    """N callers, each `streams` answers one after another; figures over every stream of the level. The
    inter-token latency is the gap between streamed pieces: a piece holds every token decoded since the last one
    left (the generator's `stream_interval_ms`; `params={"stream_interval_ms": 0}` asks for one per token)."""
    done: list[_Stream] = []
    errors: list[str] = []

    async def caller(index: int) -> None:
        for turn in range(streams):
            prompt = prompts[(index * streams + turn) % len(prompts)]
            try:
                done.append(await _one(generator, prompt, new_tokens, timeout_s, params))
            except TritonError as error:
                errors.append(str(error))

    started = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(concurrency)))
    seconds = time.perf_counter() - started
    ttfts = [1000 * s.ttft_s for s in done]
    gaps = [1000 * g for s in done for g in s.gaps_s]
    rates = [(s.tokens - 1) / (s.seconds - s.ttft_s) for s in done if s.tokens > 1 and s.seconds > s.ttft_s]
    return StreamLevel(
        concurrency=concurrency, streams=len(done), errors=len(errors), seconds=round(seconds, 4),
        aggregate_tokens_per_second=round(sum(s.tokens for s in done) / seconds, 2),
        stream_tokens_per_second_p50=round(percentile(rates, 50), 2),
        ttft_p50_ms=round(percentile(ttfts, 50), 1), ttft_p99_ms=round(percentile(ttfts, 99), 1),
        ttft_max_ms=round(max(ttfts), 1) if ttfts else math.nan,
        itl_p50_ms=round(percentile(gaps, 50), 2), itl_p99_ms=round(percentile(gaps, 99), 2),
        first_error=errors[0] if errors else "")


async def run_generation_bench(url: str, model: str, levels: Sequence[int], prompts: Sequence[Prompt],
                               new_tokens: int = 64, streams: int = 4, timeout_s: float = 120.0,
                               options: ClientOptions | None = None, progress: bool = True,
                               params: Mapping[str, Any] | None = None) -> list[StreamLevel]:
    """Every level in turn on one connection, after one warm-up answer (the first stream pays for loading)."""
    results = []
    async with AsyncTritonClient(url, options) as client:
        await client.wait_until_ready(model, timeout_s=min(timeout_s, 60.0))
        generator = AsyncGenerator(client, model)
        await _one(generator, prompts[0], min(new_tokens, 8), timeout_s)
        for concurrency in levels:
            result = await run_level(generator, prompts, concurrency, streams, new_tokens, timeout_s, params)
            results.append(result)
            if progress:
                print(format_level(result), flush=True)
    return results


LEVEL_HEADER = (f"{'conc':>5}{'streams':>8}{'errors':>7}{'agg tok/s':>11}{'tok/s p50':>11}{'TTFT p50':>10}"
                f"{'TTFT p99':>10}{'ITL p50':>9}{'ITL p99':>9}  (ms)")


def format_level(r: StreamLevel) -> str:
    return (f"{r.concurrency:>5}{r.streams:>8}{r.errors:>7}{r.aggregate_tokens_per_second:>11.1f}"
            f"{r.stream_tokens_per_second_p50:>11.1f}{r.ttft_p50_ms:>10.0f}{r.ttft_p99_ms:>10.0f}"
            f"{r.itl_p50_ms:>9.1f}{r.itl_p99_ms:>9.1f}" + (f"  first error: {r.first_error}" if r.errors else ""))


def write_generation_outputs(results: dict[str, Sequence[StreamLevel]], prefix: Path, title: str) -> list[Path]:
    """JSON of every level (per named series) and a PNG: aggregate tokens/s and time to first token by level."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    json_path, png_path = prefix.with_suffix(".json"), prefix.with_suffix(".png")
    rows = {name: [asdict(r) for r in levels] for name, levels in results.items()}
    temporary = json_path.with_name(json_path.name + ".tmp")
    temporary.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    temporary.replace(json_path)
    if save_png(lambda: generation_figure(results, title), png_path):
        return [json_path, png_path]
    return [json_path]


def generation_figure(results: dict[str, Sequence[StreamLevel]], title: str) -> Any:
    """Two panels against concurrent streams: aggregate tokens/s, and time to first token p50 / p99."""
    import matplotlib.pyplot as plt

    fig, (speed, first) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=100)
    ticks = sorted({r.concurrency for levels in results.values() for r in levels})
    for name, levels in results.items():
        x = [r.concurrency for r in levels]
        speed.plot(x, [r.aggregate_tokens_per_second for r in levels], "o-", label=name)
        line = first.plot(x, [r.ttft_p50_ms for r in levels], "o-", label=f"{name} p50")[0]
        first.plot(x, [r.ttft_p99_ms for r in levels], "^:", color=line.get_color(), label=f"{name} p99")
    for axis, label in ((speed, "aggregate tokens/s"), (first, "time to first token (ms)")):
        axis.set_xscale("log", base=2)
        axis.set_xticks(ticks, [str(t) for t in ticks])
        axis.set_xlabel("concurrent streams")
        axis.set_ylabel(label)
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
