"""What the OpenAI-compatible API costs over the gRPC path it relays to (issue 24).

    .venv/bin/python benchmarks/openai_api.py --out runs/bench/openai_api

SmolLM2-135M-Instruct int4 (the exporter's own build), published as one continuously batching generator and served
by one embedded Triton, with the API in front of it in a process of its own (`tuneship api`, as deployed: the
callers' work does not share its interpreter), all on loopback. In one run, the two paths taking turns, three
rounds:

- 1 and 8 concurrent callers, each streaming 3 answers of exactly 64 tokens one after another: the project's
  AsyncGenerator over gRPC against the `openai` package's AsyncOpenAI streaming chat completions and against the
  same requests over bare HTTP connections (what the API costs apart from the package's parsing in the caller;
  the same messages; time to first token is the first content piece at the caller, tokens from each path's usage);
- one caller alone, 60 short answers per path taking turns request by request: the median time to first token
  over gRPC, through the API with the `openai` package and over a bare HTTP connection (what the API adds apart
  from the package's own work), and the API's own measure (route to first piece, from its /metrics).

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
PAIRS = 60
# The paths measured, by name: gRPC (the project's AsyncGenerator), the API through the `openai` package, the API
# over a bare HTTP connection (the caller's own parsing left out).
PATHS = {"grpc": "grpc", "openai-api": "api", "api-http": "http"}
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
            bare = HttpCaller(api_url)
            for turn in range(STREAMS_PER_CALLER):
                messages = messages_of(reviews[(index * STREAMS_PER_CALLER + turn) % len(reviews)])
                if path == "grpc":
                    done.append(await grpc_stream(generator, messages, NEW_TOKENS))
                elif path == "http":
                    done.append(await bare.stream(messages, NEW_TOKENS))
                else:
                    done.append(await api_stream(client, messages, NEW_TOKENS))
            await bare.close()
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


class HttpCaller:
    """Streamed chat completions over one kept-alive HTTP/1.1 connection, no client library: what the API itself
    costs, apart from the `openai` package's own work in the caller."""

    def __init__(self, api_url: str) -> None:
        from urllib.parse import urlsplit

        self.where = urlsplit(api_url)
        self.connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def stream(self, messages: list[dict[str, str]], tokens: int) -> tuple[float, int, float]:
        """(first piece s, completion tokens, total s) of one answer of exactly `tokens` tokens."""
        body = json.dumps({"model": "chat", "messages": messages, "max_tokens": tokens, "min_tokens": tokens,
                           "stream": True, "stream_options": {"include_usage": True}}).encode()
        head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {self.where.netloc}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        started = time.perf_counter()
        if self.connection is None:
            self.connection = await asyncio.open_connection(self.where.hostname, self.where.port)
        reader, writer = self.connection
        writer.write(head + body)
        first = None
        count = 0
        while line := await reader.readline():
            if line.startswith(b"data: [DONE]"):
                break
            if not line.startswith(b"data: "):
                continue
            # The opening chunk ("role", empty content) leaves with the first piece; the piece's own line follows.
            if first is None and b'"content":"' in line and b'"content":""' not in line:
                first = time.perf_counter() - started
            elif b'"usage":{' in line:
                count = int(json.loads(line[6:])["usage"]["completion_tokens"])
        while (line := await reader.readline()) and line != b"0\r\n":  # the chunked body's last chunk
            pass
        await reader.readline()
        return first or 0.0, count, time.perf_counter() - started

    async def close(self) -> None:
        if self.connection is not None:
            self.connection[1].close()
            await self.connection[1].wait_closed()


def _api_ttft(api_url: str) -> tuple[float, float]:
    """The API's own time-to-first-token histogram (sum, count), from its /metrics."""
    import urllib.request

    text = urllib.request.urlopen(f"{api_url}/metrics", timeout=10).read().decode()
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("tuneship_api_time_to_first_token_seconds_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("tuneship_api_time_to_first_token_seconds_count"):
            count += float(line.rsplit(" ", 1)[1])
    return total, count


async def added_latency(grpc_url: str, api_url: str) -> dict[str, Any]:
    """One caller, short answers, three paths taking turns request by request: each path's median first token
    (gRPC, the API over bare HTTP, the API through the `openai` package), and the API's own measure of it (from
    a request's arrival at its route to the first piece from Triton, mean)."""
    import openai

    from tuneship.client import AsyncGenerator, AsyncTritonClient

    grpc_ms, http_ms, api_ms = [], [], []
    async with AsyncTritonClient(grpc_url) as triton:
        generator = AsyncGenerator(triton, "chat")
        client = openai.AsyncOpenAI(base_url=f"{api_url}/v1", api_key="none", max_retries=0)
        bare = HttpCaller(api_url)
        for _ in range(3):  # warm every path (connections, the template cache)
            await grpc_stream(generator, SHORT, 4)
            await bare.stream(SHORT, 4)
            await api_stream(client, SHORT, 4)
        before = _api_ttft(api_url)
        for index in range(3 * PAIRS):
            await asyncio.sleep(0.2)
            if index % 3 == 0:
                grpc_ms.append(1000 * (await grpc_stream(generator, SHORT, 4))[0])
            elif index % 3 == 1:
                http_ms.append(1000 * (await bare.stream(SHORT, 4))[0])
            else:
                api_ms.append(1000 * (await api_stream(client, SHORT, 4))[0])
        after = _api_ttft(api_url)
        await client.close()
        await bare.close()
    grpc = statistics.median(grpc_ms)
    return {"grpc_ttft_p50_ms": round(grpc, 2),
            "api_ttft_p50_ms": round(statistics.median(api_ms), 2),
            "http_ttft_p50_ms": round(statistics.median(http_ms), 2),
            "added_ms": round(statistics.median(api_ms) - grpc, 2),
            "added_bare_http_ms": round(statistics.median(http_ms) - grpc, 2),
            "api_route_ttft_mean_ms": round(1000 * (after[0] - before[0]) / max(1.0, after[1] - before[1]), 2),
            "pairs": PAIRS}


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
    for name, marker in (("grpc", "o"), ("openai-api", "s"), ("api-http", "^")):
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
                    turn = (index + round_) % len(PATHS)
                    names = list(PATHS)
                    for path in names[turn:] + names[:turn]:
                        time.sleep(2.0)
                        row = asyncio.run(level(PATHS[path], server.grpc_url, api_url, callers, reviews))
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
    share: dict[str, dict[str, float]] = {"openai-api": {}, "api-http": {}}
    pooled: dict[str, dict[str, float]] = {"openai-api": {}, "api-http": {}}  # every round's tokens/s summed
    for callers in LEVELS:
        grpc = next(r for r in median_rows if r["path"] == "grpc" and r["callers"] == callers)
        for path, shares in share.items():
            row = next(r for r in median_rows if r["path"] == path and r["callers"] == callers)
            shares[str(callers)] = round(row["aggregate_tokens_per_second"] / grpc["aggregate_tokens_per_second"], 3)
            pooled[path][str(callers)] = round(sum(row["rounds_aggregate_tokens_per_second"])
                                               / sum(grpc["rounds_aggregate_tokens_per_second"]), 3)
    result = {"model": "SmolLM2-135M-Instruct int4 (k_quant), continuous batching, max_concurrency 8",
              "new_tokens": NEW_TOKENS, "streams_per_caller": STREAMS_PER_CALLER, "rounds": args.rounds,
              "levels": median_rows, "api_share_of_grpc_tokens_per_second": share,
              "api_share_of_grpc_every_round_summed": pooled, "first_token": latency}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plot(median_rows, args.out.with_suffix(".png"))
    print(json.dumps({"share": share, "pooled": pooled, "first_token": latency}, indent=2))


if __name__ == "__main__":
    main()
