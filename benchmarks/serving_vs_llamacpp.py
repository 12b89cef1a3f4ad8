"""The serving engine side by side with llama.cpp's server on this machine (issue 39).

    .venv/bin/python benchmarks/serving_vs_llamacpp.py --llama-bin /work/llama/build/bin \\
        --out runs/bench/serving_vs_llamacpp

The same SmolLM2-135M-Instruct weights both ways: tuneship's onnxruntime-genai builds (int8, int4 k_quant) published
as generators behind `tuneship api`, and llama.cpp's `llama-server` on GGUFs made from the bundled Q4_1 GGUF with
`llama-quantize` (Q8_0, Q4_0; 8 slots, 2 threads, continuous batching and prompt caching on, as it ships). Both
are driven through their OpenAI-compatible chat completions by one client (the `openai` package's AsyncOpenAI,
streaming with usage), taking turns at every measurement, so a change in the shared machine's speed reaches both:

- distinct prompts (sharing only the system prompt): 1 / 4 / 8 concurrent callers, each streaming 3 answers of
  exactly 64 tokens (tuneship's `min_tokens`, llama.cpp's `ignore_eos`): aggregate tokens/s, first-token p50;
- a repeated prefix: the same ~70-token prompt, and a ~1,000-token document asked again, at 1 and 8 streams after
  one warm-up request: first-token p50 (what reusing computed keys and values buys);
- constrained answers: 8 concurrent JSON-schema requests against 8 plain ones and one JSON-schema request alone
  (48 tokens each: the schema's reason is longer than that, so every answer runs its length): aggregate tokens/s.

Never run in CI (it builds nothing itself; build llama.cpp's server as ARCHITECTURE.md says). Writes OUT.json and
OUT.png; prints every figure with the CPU's flags.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LEVELS = (1, 4, 8)
NEW_TOKENS = 64
STREAMS_PER_CALLER = 3
ROUNDS = 3
SYSTEM = ("You are a film critic's assistant. Answer in one short sentence, plainly, without lists, and say when "
          "a review is positive or negative.")
# A reason longer than the answer's 48 tokens: every constrained answer runs its full length, as the plain ones do
# (min_tokens / ignore_eos), so tokens/s compare like for like.
SCHEMA = {"type": "object", "properties": {"label": {"enum": ["positive", "negative"]},
                                           "reason": {"type": "string", "minLength": 400, "maxLength": 600}},
          "required": ["label", "reason"], "additionalProperties": False}


def cpu_flags() -> str:
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags |= {f for f in line.split() if f.startswith("avx512") or f == "avx2"}
    return " ".join(sorted(flags))


# -- the two servers -------------------------------------------------------------------------------------------


def build_tuneship(workdir: Path, precisions: list[str]) -> Path:
    """A repository with one generator per precision (`chat_int8`, `chat_int4`), the exporter's builds."""
    from tuneship.exporter.instruct.build import GenaiVariant, build_variant
    from tuneship.exporter.instruct.options import GenerationServing
    from tuneship.exporter.instruct.publishing import publish_generator
    from tuneship.trainer.instruct.base_model import resolve_causal_lm

    repository = workdir / "repository"
    for precision in precisions:
        name = f"chat_{precision.replace('-', '_')}"
        if (repository / name / "1").is_dir():
            continue
        variant = _built(workdir, precision, resolve_causal_lm("smollm2"), build_variant, GenaiVariant)
        publish_generator(repository, name, variant,
                          GenerationServing(max_concurrency=8, max_queue=64, max_prompt_tokens=2048), keep=None)
    return repository


def _built(workdir: Path, precision: str, model: Path, build_variant: Any, variant_type: Any) -> Any:
    """The builder's variant (`int8`, `int4`, `fp32`), or a calibrated 4-bit one (`int4-gptq`, `int4-hqq`) from the
    fp32 build, calibrated on review prompts in the chat template."""
    if precision.startswith("int4-"):
        from tuneship.client import builtin_reviews
        from tuneship.exporter.instruct.calibrated import build_calibrated
        from tuneship.serving import ChatFormat

        method = precision.split("-", 1)[1]
        folder = workdir / f"cpu-{precision}"
        if (folder / "genai_config.json").is_file():
            return variant_type(precision, "int4", folder, "cpu")
        fp32 = _built(workdir, "fp32", model, build_variant, variant_type)
        chat = ChatFormat(str(fp32.path))
        prompts = [chat.chat_ids(distinct_messages(builtin_reviews(), i)) for i in range(32)]
        return build_calibrated(fp32, workdir, method, prompts)
    folder = workdir / f"cpu-{precision}"
    if (folder / "genai_config.json").is_file():
        return variant_type(f"cpu-{precision}", precision, folder, "cpu")
    return build_variant(model, workdir, "cpu", precision)


def build_ggufs(workdir: Path, llama_bin: Path, kinds: list[str]) -> dict[str, Path]:
    import importlib.util

    from tuneship.trainer.instruct.base_model import GGUF_MODELS

    package, gguf_file, _, _ = GGUF_MODELS["smollm2"]
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations
    source = Path(next(iter(spec.submodule_search_locations))) / gguf_file
    made = {}
    for kind in kinds:
        target = workdir / f"smollm2-{kind}.gguf"
        if not target.is_file():
            subprocess.run([str(llama_bin / "llama-quantize"), "--allow-requantize", str(source), str(target), kind],
                           check=True, capture_output=True)
        made[kind] = target
    return made


def _wait_healthy(url: str, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not become healthy at {url}")


@contextlib.contextmanager
def http_server(what: str, command: list[str]) -> Iterator[str]:
    """`command` (its port given as `{port}`) on loopback until the block ends; yields its base URL once healthy."""
    from tuneship.deploy.server import free_port

    port = free_port()
    process = subprocess.Popen([part.format(port=port) for part in command], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, what)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def llama_server(llama_bin: Path, gguf: Path) -> contextlib.AbstractContextManager[str]:
    return http_server("llama-server", [str(llama_bin / "llama-server"), "-m", str(gguf), "--host", "127.0.0.1",
                                        "--port", "{port}", "-np", "8", "-c", "16384", "-t", "2", "-tb", "2",
                                        "--no-webui"])


def tuneship_api(grpc_url: str) -> contextlib.AbstractContextManager[str]:
    return http_server("tuneship api", [sys.executable, "-m", "tuneship", "api", "--url", grpc_url, "--api-port",
                                        "{port}"])


# -- one request, as both are asked --------------------------------------------------------------------------


class Target:
    """One OpenAI-compatible endpoint and the model id it serves; how to ask it for an exact length."""

    def __init__(self, name: str, url: str, model: str, llama: bool) -> None:
        import openai

        self.name, self.model, self.llama = name, model, llama
        self.client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=600)

    def exact(self, tokens: int) -> dict[str, Any]:
        return {"ignore_eos": True} if self.llama else {"min_tokens": tokens}

    async def stream(self, messages: list[dict[str, str]], max_tokens: int, exact: bool = True,
                     schema: dict[str, Any] | None = None) -> tuple[float, int, float, int]:
        """(seconds to the first content, completion tokens, seconds in all, cached prompt tokens)."""
        started = time.perf_counter()
        extra: dict[str, Any] = dict(self.exact(max_tokens)) if exact else {}
        kwargs: dict[str, Any] = {}
        if schema is not None:
            kwargs["response_format"] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
        chunks = await self.client.chat.completions.create(
            model=self.model, messages=messages, max_tokens=max_tokens, temperature=0, stream=True,
            stream_options={"include_usage": True}, extra_body=extra, **kwargs)
        first, tokens, cached = None, 0, 0
        async for chunk in chunks:
            if chunk.choices and chunk.choices[0].delta.content and first is None:
                first = time.perf_counter() - started
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
                details = getattr(chunk.usage, "prompt_tokens_details", None)
                cached = int(getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
        total = time.perf_counter() - started
        return (first if first is not None else total), tokens, total, cached


# -- the measurements ------------------------------------------------------------------------------------------


def distinct_messages(reviews: list[str], index: int) -> list[dict[str, str]]:
    """A prompt no other request of the run has sent (the review set is small: the request's number goes first), so
    only the system prompt is shared."""
    review = reviews[index % len(reviews)]
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Request {index}. Is this review positive or negative?\n\n{review}"}]


async def level(target: Target, reviews: list[str], callers: int, offset: int) -> dict[str, Any]:
    async def caller(index: int) -> list[tuple[float, int, float, int]]:
        return [await target.stream(distinct_messages(reviews, offset + index * STREAMS_PER_CALLER + turn),
                                    NEW_TOKENS) for turn in range(STREAMS_PER_CALLER)]

    started = time.perf_counter()
    results = [r for batch in await asyncio.gather(*(caller(i) for i in range(callers))) for r in batch]
    seconds = time.perf_counter() - started
    return {"tokens_per_second": round(sum(r[1] for r in results) / seconds, 1),
            "ttft_p50_ms": round(1000 * statistics.median(r[0] for r in results), 1)}


async def repeated(target: Target, messages: list[dict[str, str]], streams: int, repeats: int) -> dict[str, Any]:
    """First-token p50 of a prompt sent again (after one warm-up), `streams` at a time."""
    await target.stream(messages, 4)
    firsts, cached = [], []
    for _ in range(repeats):
        results = await asyncio.gather(*(target.stream(messages, 4) for _ in range(streams)))
        firsts += [r[0] for r in results]
        cached += [r[3] for r in results]
    return {"ttft_p50_ms": round(1000 * statistics.median(firsts), 1), "cached_tokens_p50": statistics.median(cached)}


async def constrained(target: Target, reviews: list[str], streams: int, schema: dict[str, Any] | None,
                      offset: int) -> dict[str, Any]:
    started = time.perf_counter()
    results = await asyncio.gather(*(target.stream(distinct_messages(reviews, offset + i), 48, exact=schema is None,
                                                   schema=schema) for i in range(streams)))
    seconds = time.perf_counter() - started
    return {"tokens_per_second": round(sum(r[1] for r in results) / seconds, 1),
            "tokens": sum(r[1] for r in results)}


def document(tokens_wanted: int) -> str:
    from tuneship.client import builtin_reviews

    text, reviews = "", builtin_reviews()
    index = 0
    while len(text.split()) < tokens_wanted * 0.7:
        text += reviews[index % len(reviews)] + " "
        index += 1
    return text


async def measure(targets: dict[str, Target], quick: bool, parts: set[str]) -> dict[str, Any]:
    from tuneship.client import builtin_reviews

    reviews = builtin_reviews()
    results: dict[str, Any] = {"distinct": {}, "repeated": {}, "constrained": {}}
    rounds = 1 if quick else ROUNDS
    for round_ in range(rounds if "distinct" in parts else 0):
        for callers in LEVELS:
            for name, target in targets.items():
                figure = await level(target, reviews, callers, offset=1000 * round_ + 97 * callers)
                results["distinct"].setdefault(f"{name} {callers}", []).append(figure)
                print(name, callers, figure, flush=True)
    short = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Is a film with a gripping plot "
                                                                                "and a fine cast worth seeing?"}]
    long = [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"{document(1000)}\n\nIs this critic's overall view positive?"}]
    for label, messages in (("70", short), ("1000", long)) if "repeated" in parts else ():
        for streams in (1, 8):
            for name, target in targets.items():
                figure = await repeated(target, messages, streams, 2 if quick else 5)
                results["repeated"][f"{name} {label} x{streams}"] = figure
                print("repeated", label, streams, name, figure, flush=True)
    for round_ in range(rounds if "constrained" in parts else 0):
        for name, target in targets.items():
            cases = (("plain 8", 8, None), ("json 8", 8, SCHEMA), ("json 1", 1, SCHEMA))
            for number, (case, streams, schema) in enumerate(cases):
                figure = await constrained(target, reviews, streams, schema, offset=5000 + 100 * round_ + 10 * number)
                results["constrained"].setdefault(f"{name} {case}", []).append(figure)
                print("constrained", name, case, figure, flush=True)
    return results


def median_of(figures: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(f[key] for f in figures))


def plot(results: dict[str, Any], names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (speed, first) = plt.subplots(1, 2, figsize=(11, 4))
    for name in names:
        rates = [median_of(results["distinct"][f"{name} {n}"], "tokens_per_second") for n in LEVELS]
        firsts = [median_of(results["distinct"][f"{name} {n}"], "ttft_p50_ms") for n in LEVELS]
        speed.plot(LEVELS, rates, marker="o", label=name)
        first.plot(LEVELS, firsts, marker="o", label=name)
    speed.set(xlabel="concurrent streams", ylabel="aggregate tokens/s", title="distinct prompts, 64 tokens each")
    first.set(xlabel="concurrent streams", ylabel="first token p50 (ms)", title="distinct prompts")
    for axis in (speed, first):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-bin", type=Path, required=True, help="folder with llama-server and llama-quantize")
    parser.add_argument("--workdir", type=Path, default=None, help="keep builds and GGUFs here between runs")
    parser.add_argument("--precisions", default="int8,int4", help="tuneship builds to serve")
    parser.add_argument("--ggufs", default="Q8_0,Q4_0", help="llama.cpp quantizations to serve")
    parser.add_argument("--quick", action="store_true", help="one round, fewer repeats (a smoke run)")
    parser.add_argument("--parts", default="distinct,repeated,constrained", help="which measurements to run")
    parser.add_argument("--also", default="", help="more generators already in WORKDIR/repository to measure, by "
                                                   "name (e.g. one published by an earlier tuneship, as a baseline)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/serving_vs_llamacpp"))
    args = parser.parse_args()

    from tuneship.deploy import ServeOptions, TritonServer

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="serving-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    precisions = [p for p in args.precisions.split(",") if p]
    repository = build_tuneship(workdir, precisions)
    ggufs = build_ggufs(workdir, args.llama_bin, [k for k in args.ggufs.split(",") if k])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with TritonServer(ServeOptions(model_repository=repository, grpc_port=0, http_port=0, metrics_port=0)) as server, \
            tuneship_api(server.grpc_url) as api_url, contextlib.ExitStack() as stack:
        targets = {f"tuneship {p}": Target(f"tuneship {p}", api_url, f"chat_{p.replace('-', '_')}", llama=False)
                   for p in precisions}
        for name in [n for n in args.also.split(",") if n]:
            targets[f"tuneship {name}"] = Target(f"tuneship {name}", api_url, name, llama=False)
        for kind, gguf in ggufs.items():
            url = stack.enter_context(llama_server(args.llama_bin, gguf))
            targets[f"llama.cpp {kind}"] = Target(f"llama.cpp {kind}", url, "smollm2", llama=True)
        results = asyncio.run(measure(targets, args.quick, set(args.parts.split(","))))
    results["machine"] = {"cpu_flags": cpu_flags(), "cores": len(__import__("os").sched_getaffinity(0))}
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    if results["distinct"]:
        plot(results, list(targets), args.out.with_suffix(".png"))
    print(f"wrote {args.out.with_suffix('.json')} and .png")


if __name__ == "__main__":
    main()
