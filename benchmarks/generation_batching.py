"""Concurrent generation in process, before choosing how the served generator batches (issue 23, BENCHMARKS.md).

    .venv/bin/python benchmarks/generation_batching.py --out runs/bench/generation_batching

SmolLM2-135M-Instruct int4 (k_quant), 64 tokens per stream, streams 1, 2, 4, 8 at once, each measurement in a
fresh process (nothing warm from the one before), in two designs:

- `threads`: today's served design, one `og.Generator` per request on its own thread (the model shared);
- `engine`: onnxruntime-genai 0.18's continuous-batching `og.Engine`, every request one `Request`, the decode
  steps of all running requests batched by the engine (`engine.run`), default configuration.

The engine needs the output layer's logits at every position: on the `prune_lm_head` build the served model uses,
its first step fails (`ENGINE_EXECUTION_FAILURE`), so it is measured on an unpruned build of the same weights, and
the threads design on both. Prints a table and writes JSON and a PNG (aggregate tokens/s against streams).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BUILDS = {"pruned": ["algo_config=k_quant", "prune_lm_head=true"], "unpruned": ["algo_config=k_quant"]}
NAMES = ["Tom", "Ada", "Max", "Zoe", "Leo", "Mia", "Sam", "Eve"]


def _build(out: Path, name: str) -> Path:
    from tuneship.trainer.instruct.base_model import resolve_causal_lm

    target = out / f"int4-{name}"
    if (target / "genai_config.json").is_file():
        return target
    command = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(resolve_causal_lm("smollm2")),
               "-o", str(target), "-p", "int4", "-e", "cpu", "-c", str(out / "cache"), "--extra_options",
               *BUILDS[name]]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    return target


def _model(path: Path, threads: int) -> Any:
    import onnxruntime_genai as og

    config = og.Config(str(path))
    config.overlay(json.dumps({"model": {"decoder": {"session_options": {
        "intra_op_num_threads": threads, "inter_op_num_threads": 1}}}}))
    return og.Model(config)


def _prompts(tokenizer: Any, n: int) -> list[list[int]]:
    return [list(tokenizer.encode(f"Tell me a short story about a cat named {NAMES[i % len(NAMES)]}."))
            for i in range(n)]


def run_threads(path: Path, n: int, tokens: int, threads: int) -> dict[str, Any]:
    """One og.Generator per stream on its own thread, as the served generator runs them today."""
    import threading

    import onnxruntime_genai as og

    model = _model(path, threads)
    tokenizer = og.Tokenizer(model)
    prompts = _prompts(tokenizer, n)
    firsts: list[float] = [0.0] * n
    counts = [0] * n

    def one(i: int, start: float) -> None:
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(prompts[i]) + tokens, min_length=len(prompts[i]) + tokens)
        generator = og.Generator(model, params)
        generator.append_tokens([prompts[i]])
        while not generator.is_done():
            generator.generate_next_token()
            if counts[i] == 0:
                firsts[i] = time.perf_counter() - start
            counts[i] += 1

    one(0, time.perf_counter())  # warm-up
    counts[0] = 0
    start = time.perf_counter()
    workers = [threading.Thread(target=one, args=(i, start)) for i in range(n)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return _figures(n, counts, firsts, time.perf_counter() - start)


def run_engine(path: Path, n: int, tokens: int, threads: int) -> dict[str, Any]:
    """Every stream a Request of one og.Engine; the engine batches their decode steps."""
    import numpy as np
    import onnxruntime_genai as og

    model = _model(path, threads)
    tokenizer = og.Tokenizer(model)
    engine = og.Engine(model)
    buffer = engine.create_event_buffer(256)
    token_flag, failed = og.EngineEventFlags.TOKEN.value, og.EngineEventFlags.FAILED.value

    def begin(ids: list[int], count: int) -> Any:
        request = engine.create_request()
        options = og.TurnOptions(request)
        options.set_max_generated_tokens(count)
        options.set_min_generated_tokens(count)
        request.begin_turn(np.asarray(ids, dtype=np.int32), options)
        return request, options

    warm = begin(_prompts(tokenizer, 1)[0], 4)
    while engine.has_pending_requests():
        events = engine.run(buffer)
        if len(events) and events[0].flags.value & failed:
            raise RuntimeError(f"the engine failed: {events[0].error_code}")
    warm[0].close()
    prompts = _prompts(tokenizer, n)
    start = time.perf_counter()
    requests = [begin(ids, tokens) for ids in prompts]
    index = {id(request): i for i, (request, _) in enumerate(requests)}
    firsts, counts, batch = [0.0] * n, [0] * n, []
    while engine.has_pending_requests():
        events = engine.run(buffer)
        batch.append(len(events))
        now = time.perf_counter() - start
        for k in range(len(events)):
            event = events[k]
            if event.flags.value & failed:
                raise RuntimeError(f"the engine failed: {event.error_code}")
            if event.flags.value & token_flag:
                i = index[id(event.request)]
                if counts[i] == 0:
                    firsts[i] = now
                counts[i] += 1
    figures = _figures(n, counts, firsts, time.perf_counter() - start)
    figures["mean_events_per_step"] = round(statistics.mean(batch), 2) if batch else 0.0
    return figures


def engine_admission(path: Path, threads: int) -> dict[str, Any]:
    """Does the engine admit a request between steps? Two 40-token requests run; a third arrives after step 5.
    Continuous batching gives it its first token at step 6; static batching only after the first two finish."""
    import numpy as np
    import onnxruntime_genai as og

    model = _model(path, threads)
    tokenizer = og.Tokenizer(model)
    engine = og.Engine(model)
    buffer = engine.create_event_buffer(64)
    token_flag, done_flag = og.EngineEventFlags.TOKEN.value, og.EngineEventFlags.TURN_FINISHED.value
    kept: list[Any] = []

    def begin(text: str, count: int) -> int:
        request = engine.create_request()
        options = og.TurnOptions(request)
        options.set_max_generated_tokens(count)
        options.set_min_generated_tokens(count)
        request.begin_turn(np.asarray(tokenizer.encode(text), dtype=np.int32), options)
        kept.append((request, options))
        return id(request)

    names = {begin("Tell me about cats.", 40): "first", begin("Tell me about dogs.", 40): "second"}
    step, first_token, finished = 0, {}, {}
    while engine.has_pending_requests():
        events = engine.run(buffer)
        step += 1
        for k in range(len(events)):
            event = events[k]
            name = names[id(event.request)]
            if event.flags.value & token_flag:
                first_token.setdefault(name, step)
            if event.flags.value & done_flag:
                finished[name] = step
        if step == 5:
            names[begin("Hi", 5)] = "late"
    return {"late_arrives_after_step": 5, "first_token_step": first_token, "finished_step": finished}


def _figures(n: int, counts: list[int], firsts: list[float], wall: float) -> dict[str, Any]:
    ordered = sorted(firsts)
    return {"streams": n, "tokens": sum(counts), "seconds": round(wall, 3),
            "aggregate_tokens_per_s": round(sum(counts) / wall, 1),
            "ttft_p50_ms": round(1000 * ordered[n // 2], 1), "ttft_max_ms": round(1000 * ordered[-1], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench/generation_batching"))
    parser.add_argument("--streams", default="1,2,4,8")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", nargs=4, metavar=("DESIGN", "MODEL", "STREAMS", "TOKENS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # a measurement in this fresh process
        design, path, n, tokens = args.one
        if design == "admission":
            print(json.dumps(engine_admission(Path(path), args.threads)))
            return
        run = run_engine if design == "engine" else run_threads
        print(json.dumps(run(Path(path), int(n), int(tokens), args.threads)))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    models = {name: _build(args.out, name) for name in BUILDS}
    cases = [("threads", "pruned"), ("threads", "unpruned"), ("engine", "unpruned")]
    results: list[dict[str, Any]] = []
    for n in (int(s) for s in args.streams.split(",")):
        for design, build in cases:
            done = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--one", design,
                                   str(models[build]), str(n), str(args.tokens)], capture_output=True, text=True)
            if done.returncode != 0:
                row: dict[str, Any] = {"streams": n, "error": done.stderr.strip().splitlines()[-1][:200]}
            else:
                row = json.loads(done.stdout.strip().splitlines()[-1])
            row.update(design=design, build=build)
            results.append(row)
            print(f"{design:8} {build:9} {n:>2} streams: " + (
                f"{row['aggregate_tokens_per_s']:>6.1f} tokens/s, first token p50 {row['ttft_p50_ms']:.0f} ms, "
                f"max {row['ttft_max_ms']:.0f} ms" if "error" not in row else row["error"]), flush=True)
    done = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--one", "admission",
                           str(models["unpruned"]), "3", "40"], capture_output=True, text=True, check=True)
    admission = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"engine admission: a request arriving after step 5 got its first token at step "
          f"{admission['first_token_step']['late']} (the running two finished at step "
          f"{admission['finished_step']['first']})")
    results.append({"design": "engine", "build": "unpruned", "admission": admission})
    (args.out / "generation_batching.json").write_text(json.dumps(results, indent=2) + "\n")
    _plot(results, args.out / "generation_batching.png")
    print(f"wrote {args.out / 'generation_batching.json'} and .png")


def _plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(7, 4), dpi=100)
    for key in sorted({(r["design"], r["build"]) for r in results}):
        rows = [r for r in results if (r["design"], r["build"]) == key and "aggregate_tokens_per_s" in r]
        axis.plot([r["streams"] for r in rows], [r["aggregate_tokens_per_s"] for r in rows], "o-",
                  label=f"{key[0]} ({key[1]} build)")
    axis.set_xlabel("concurrent streams")
    axis.set_ylabel("aggregate tokens/s")
    axis.set_title("SmolLM2-135M int4, 64 tokens per stream, in process")
    axis.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
