"""What the OpenAI-compatible API costs over the gRPC path it relays to (issue 24).

    .venv/bin/python benchmarks/openai_api.py --out runs/bench/openai_api

SmolLM2-135M-Instruct int4 (the exporter's own build), published as one continuously batching generator and served
by one embedded Triton, with the API in front of it in a process of its own (`tuneship api`, as deployed: the
callers' work does not share its interpreter), all on loopback. In one run, the two paths taking turns, three
rounds:

- 1 and 8 concurrent callers, each streaming 3 answers of exactly 64 tokens one after another: the project's
  AsyncGenerator over gRPC against the `openai` package's AsyncOpenAI streaming chat completions (the same
  messages; time to first token is the first content piece at the caller, tokens from each path's usage);
- one caller alone, 20 short answers per path alternating request by request: the median time to first token of
  each path and their difference, the API's added latency.

Writes OUT.json and OUT.png (aggregate tokens/s and time to first token p50 for both paths).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LEVELS = (1, 8)
NEW_TOKENS = 64
STREAMS_PER_CALLER = 3
ROUNDS = 3
PAIRS = 20
SHORT = [{"role": "user", "content": "Is this review positive or negative?\n\nA gripping, beautifully acted film."}]


def build(workdir: Path) -> Any:
    from tuneship.exporter.instruct.build import GenaiVariant, build_variant
    from tuneship.trainer.instruct.base_model import resolve_causal_lm

    folder = workdir / "cpu-int4"
    if (folder / "genai_config.json").is_file():
        return GenaiVariant("cpu-int4", "int4", folder, "cpu")
    return build_variant(resolve_causal_lm("smollm2"), workdir, "cpu", "int4")


def messages_of(review: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Is this review positive or negative?\n\n{review}"}]


async def grpc_stream(generator: Any, messages: list[dict[str, str]], tokens: int) -> tuple[float, int, float]:
    started = time.perf_counter()
    stream = generator.stream(messages, max_tokens=tokens, min_tokens=tokens)
    first = None
    async for _piece in stream:
        first = first if first is not None else time.perf_counter() - started
    assert stream.generation is not None
    return first or 0.0, stream.generation.tokens, time.perf_counter() - started


async def api_stream(client: Any, messages: list[dict[str, str]], tokens: int) -> tuple[float, int, float]:
    started = time.perf_counter()
    first = None
    count = 0
    chunks = await client.chat.completions.create(model="chat", messages=messages, max_tokens=tokens,
                                                  stream=True, stream_options={"include_usage": True},
                                                  extra_body={"min_tokens": tokens})
    async for chunk in chunks:
        if chunk.choices and chunk.choices[0].delta.content:
            first = first if first is not None else time.perf_counter() - started
        if chunk.usage is not None:
            count = chunk.usage.completion_tokens
    return first or 0.0, count, time.perf_counter() - started


async def level(path: str, grpc_url: str, api_url: str, callers: int, reviews: list[str]) -> dict[str, Any]:
    import openai

    from tuneship.client import AsyncGenerator, AsyncTritonClient

    async with AsyncTritonClient(grpc_url) as triton:
        generator = AsyncGenerator(triton, "chat")
        client = openai.AsyncOpenAI(base_url=f"{api_url}/v1", api_key="none", max_retries=0)

        async def caller(index: int) -> list[tuple[float, int, float]]:
            done = []
            for turn in range(STREAMS_PER_CALLER):
                messages = messages_of(reviews[(index * STREAMS_PER_CALLER + turn) % len(reviews)])
                one = grpc_stream(generator, messages, NEW_TOKENS) if path == "grpc" else api_stream(
                    client, messages, NEW_TOKENS)
                done.append(await one)
            return done

        started = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(caller(i) for i in range(callers))) for r in rs]
        wall = time.perf_counter() - started
        await client.close()
    ttfts = sorted(1000 * r[0] for r in results)
    return {"path": path, "callers": callers, "streams": len(results),
            "tokens": sum(r[1] for r in results),
            "aggregate_tokens_per_second": round(sum(r[1] for r in results) / wall, 1),
            "ttft_p50_ms": round(statistics.median(ttfts), 1), "ttft_max_ms": round(ttfts[-1], 1)}


async def added_latency(grpc_url: str, api_url: str) -> dict[str, Any]:
    """One caller, short answers, the paths alternating request by request: each path's median first token."""
    import openai

    from tuneship.client import AsyncGenerator, AsyncTritonClient

    grpc_ms, api_ms = [], []
    async with AsyncTritonClient(grpc_url) as triton:
        generator = AsyncGenerator(triton, "chat")
        client = openai.AsyncOpenAI(base_url=f"{api_url}/v1", api_key="none", max_retries=0)
        for _ in range(3):  # warm both paths (connections, the template cache)
            await grpc_stream(generator, SHORT, 4)
            await api_stream(client, SHORT, 4)
        for index in range(2 * PAIRS):
            await asyncio.sleep(0.2)
            if index % 2 == 0:
                grpc_ms.append(1000 * (await grpc_stream(generator, SHORT, 4))[0])
            else:
                api_ms.append(1000 * (await api_stream(client, SHORT, 4))[0])
        await client.close()
    return {"grpc_ttft_p50_ms": round(statistics.median(grpc_ms), 2),
            "api_ttft_p50_ms": round(statistics.median(api_ms), 2),
            "added_ms": round(statistics.median(api_ms) - statistics.median(grpc_ms), 2), "pairs": PAIRS}


@contextlib.contextmanager
def api_process(grpc_url: str) -> Any:
    """`tuneship api` in front of the server, until the block ends; yields its base URL."""
    import subprocess
    import urllib.request

    from tuneship.deploy.server import free_port

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tuneship", "api", "--url", grpc_url, "--api-port", str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("tuneship api did not become healthy")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (speed, first) = plt.subplots(1, 2, figsize=(10, 4))
    for name, marker in (("grpc", "o"), ("openai-api", "s")):
        mine = [r for r in rows if r["path"] == name]
        speed.plot([r["callers"] for r in mine], [r["aggregate_tokens_per_second"] for r in mine], marker=marker,
                   label=name)
        first.plot([r["callers"] for r in mine], [r["ttft_p50_ms"] for r in mine], marker=marker, label=name)
    speed.set(xlabel="concurrent callers", ylabel="aggregate tokens/s", title="Throughput (median round)")
    first.set(xlabel="concurrent callers", ylabel="time to first token p50 (ms)", title="First token")
    for axis in (speed, first):
        axis.set_xticks(list(LEVELS))
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench/openai_api"))
    parser.add_argument("--workdir", type=Path, default=None, help="reuse a build (default: a temporary folder)")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()

    from tuneship.client import builtin_reviews
    from tuneship.deploy import ServeOptions, TritonServer
    from tuneship.exporter.instruct.options import GenerationServing
    from tuneship.exporter.instruct.publishing import publish_generator

    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or Path(scratch) / "build"
        workdir.mkdir(parents=True, exist_ok=True)
        variant = build(workdir)
        repository = Path(scratch) / "repository"
        publish_generator(repository, "chat", variant, GenerationServing(max_concurrency=8, max_queue=16), keep=None)
        reviews = builtin_reviews()
        with TritonServer(ServeOptions(model_repository=repository, grpc_port=0, http_port=0,
                                       metrics_port=0)) as server, \
                api_process(server.grpc_url) as api_url:
            rounds: dict[tuple[str, int], list[dict[str, Any]]] = {}
            for round_ in range(args.rounds):
                for index, callers in enumerate(LEVELS):
                    order = ("grpc", "openai-api") if (index + round_) % 2 == 0 else ("openai-api", "grpc")
                    for path in order:
                        time.sleep(2.0)
                        row = asyncio.run(level("grpc" if path == "grpc" else "api", server.grpc_url, api_url,
                                                callers, reviews))
                        row["path"] = path
                        rounds.setdefault((path, callers), []).append(row)
                        print(json.dumps(row), flush=True)
            time.sleep(2.0)
            latency = asyncio.run(added_latency(server.grpc_url, api_url))
            print(json.dumps(latency), flush=True)
    median_rows = []
    for (_path, _callers), rows in sorted(rounds.items()):
        ordered = sorted(rows, key=lambda r: r["aggregate_tokens_per_second"])
        median = dict(ordered[len(ordered) // 2])
        median["rounds_aggregate_tokens_per_second"] = [r["aggregate_tokens_per_second"] for r in rows]
        median_rows.append(median)
    share = {}
    for callers in LEVELS:
        grpc = next(r for r in median_rows if r["path"] == "grpc" and r["callers"] == callers)
        api_row = next(r for r in median_rows if r["path"] == "openai-api" and r["callers"] == callers)
        share[str(callers)] = round(api_row["aggregate_tokens_per_second"] / grpc["aggregate_tokens_per_second"], 3)
    result = {"model": "SmolLM2-135M-Instruct int4 (k_quant), continuous batching, max_concurrency 8",
              "new_tokens": NEW_TOKENS, "streams_per_caller": STREAMS_PER_CALLER, "rounds": args.rounds,
              "levels": median_rows, "api_share_of_grpc_tokens_per_second": share, "first_token": latency}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plot(median_rows, args.out.with_suffix(".png"))
    print(json.dumps({"share": share, "first_token": latency}, indent=2))


if __name__ == "__main__":
    main()
