"""Concurrent streams served through Triton: continuous batching against one generator per request (issue 23).

    .venv/bin/python benchmarks/generation_concurrency.py --out runs/bench/generation_concurrency

SmolLM2-135M-Instruct int4 (k_quant, output layer pruned: the exporter's own build), published twice into one
repository with the same limits (8 running, 16 queued): the serving engine with the default 50 ms stream interval
(`chat`) and the same sending a piece per token (`chat_every_token`, `stream_interval_ms` 0), served by one embedded
Triton. (The per-request design of issue 23's figures is gone: every request is a row of the engine now.) Measured
in one run, the models taking turns at each level, three rounds over every level (the round of median aggregate
speed is reported, every round's aggregate too), so a change in the shared machine's speed reaches every design:

- 1, 2, 4, 8 concurrent callers, each streaming 3 answers of exactly 64 tokens one after another
  (`tuneship bench`'s generator load: time to first token p50/p99, inter-token latency, tokens/s);
- the same load on the continuous model's batcher in this process, callbacks doing nothing (taking its turn at
  each level): the ceiling the graph and the scheduler leave for serving;
- one stream alone served (both continuous models) against the same folder in process (onnxruntime-genai greedy,
  64 tokens), ten rounds interleaved;
- head of line: a short request's time to first token when idle, and 0.3 s after a 1,024-token answer started;
- a nine-turn conversation (48-token answers), with a session id and without, three times: each turn's median time
  to first token (`--conversation-only` runs just this).

Writes OUT.json and OUT.png (aggregate tokens/s and time to first token against streams).
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LEVELS = (1, 2, 4, 8)
NEW_TOKENS = 64
STREAMS_PER_CALLER = 3
ROUNDS = 3
LONG_TOKENS = 1024
SHORT = [{"role": "user", "content": "Is this review positive or negative?\n\nA gripping, beautifully acted film."}]
MODELS = {"continuous": "chat", "every token": "chat_every_token"}
SERVING: dict[str, dict[str, int]] = {"continuous": {}, "every token": {"stream_interval_ms": 0}}


def build(workdir: Path) -> Any:
    from tuneship.exporter.instruct.build import build_variant
    from tuneship.trainer.instruct.base_model import resolve_causal_lm

    return build_variant(resolve_causal_lm("smollm2"), workdir, "cpu", "int4")


def publish(repository: Path, variant: Any) -> None:
    from tuneship.exporter.instruct.options import GenerationServing
    from tuneship.exporter.instruct.publishing import publish_generator

    for design, name in MODELS.items():
        publish_generator(repository, name, variant, GenerationServing(max_concurrency=8, max_queue=16,
                                                                       **SERVING[design]), keep=None)


async def head_of_line(url: str, model: str, rounds: int = 3) -> dict[str, Any]:
    """The short request's first token idle (median of 5) and behind a long answer that started 0.3 s before."""
    from tuneship.client import AsyncGenerator, AsyncTritonClient

    async with AsyncTritonClient(url) as client:
        generator = AsyncGenerator(client, model)

        async def short_ttft() -> float:
            answer = await generator.generate(SHORT, max_tokens=8)
            return answer.time_to_first_token_s

        idle = []
        for _ in range(5):
            idle.append(await short_ttft())
            await asyncio.sleep(0.3)
        behind = []
        for _ in range(rounds):
            long = generator.stream([{"role": "user", "content": "Tell me a very long story about a lighthouse."}],
                                    max_tokens=LONG_TOKENS, min_tokens=LONG_TOKENS, timeout_s=600)
            pieces = aiter(long)
            await anext(pieces)  # the long answer is decoding
            await asyncio.sleep(0.3)
            behind.append(await short_ttft())
            long.cancel()
            async for _ in pieces:
                pass
            await asyncio.sleep(1.0)
    idle_ms = 1000 * statistics.median(idle)
    behind_ms = [round(1000 * t, 1) for t in behind]
    return {"idle_ttft_ms": round(idle_ms, 1), "behind_long_ttft_ms": behind_ms,
            "ratio_worst": round(max(behind_ms) / idle_ms, 2)}


# The same follow-up question each turn, so every turn prefills about as many new tokens (the answer's end
# marker and the question) and only the conversation before it grows.
QUESTIONS = ["Tell me about lighthouses."] + ["Tell me more about them."] * 8


async def conversation(url: str, model: str, session: bool) -> list[dict[str, Any]]:
    """Nine turns of one chat, each answer 48 tokens; the time to first token of every turn, with a session id
    (the server keeps the cache) or without (each turn prefills the whole conversation)."""
    import uuid

    from tuneship.client import AsyncGenerator, AsyncTritonClient

    turns = []
    messages: list[dict[str, str]] = []
    extra = {"session": f"bench-{uuid.uuid4().hex}"} if session else {}
    async with AsyncTritonClient(url) as client:
        generator = AsyncGenerator(client, model)
        for question in QUESTIONS:
            messages.append({"role": "user", "content": question})
            stream = generator.stream(messages, max_tokens=48, min_tokens=48, **extra)
            async for _piece in stream:
                pass
            answer = stream.generation
            assert answer is not None
            messages.append({"role": "assistant", "content": answer.text})
            turns.append({"ttft_ms": round(1000 * answer.time_to_first_token_s, 1),
                          "prompt_tokens": answer.prompt_tokens, "cached_prompt_tokens": answer.cached_prompt_tokens})
            await asyncio.sleep(0.5)
    return turns


def conversations(url: str, model: str, session: bool, repeats: int = 3) -> dict[str, Any]:
    """`conversation` `repeats` times: each turn's median time to first token (one chat's turns vary with what
    else the machine does at that moment) and every run's."""
    runs = [asyncio.run(conversation(url, model, session)) for _ in range(repeats)]
    turns = [{"ttft_ms": round(statistics.median(run[i]["ttft_ms"] for run in runs), 1),
              "prompt_tokens": runs[0][i]["prompt_tokens"], "cached_prompt_tokens": runs[0][i]["cached_prompt_tokens"]}
             for i in range(len(runs[0]))]
    return {"turns": turns, "every_run_ttft_ms": [[t["ttft_ms"] for t in run] for run in runs]}


class InProcess:
    """The served model's batcher in this process, fed the same callers and prompts with callbacks that do
    nothing: the aggregate the graph and the scheduler allow before any serving (Triton, the stub's IPC, the
    token's decoding, the caller's process), i.e. the ceiling of the served continuous design."""

    def __init__(self, folder: Path, slots: int = 8) -> None:
        from tuneship.serving import ChatFormat, Engine

        chat = ChatFormat(str(folder))
        self.ids = chat.chat_ids
        self.batcher = Engine(str(folder), slots=slots)
        self.batcher.cache_prefix(chat.opening())  # as the generator model does at load

    def level(self, prompts: list[Any], callers: int, streams: int, new_tokens: int) -> float:
        """Aggregate tokens/s of `callers` callers, each `streams` answers one after another (run_level's load)."""
        import threading

        from tuneship.serving import Request, SamplingParams

        encoded = [self.ids(p) for p in prompts]
        done = threading.Semaphore(0)
        tokens = [0]

        def start(caller: int, turn: int) -> None:
            def finished(_reason: str, _error: BaseException | None) -> None:
                if turn + 1 < streams:
                    start(caller, turn + 1)  # the caller's next answer, submitted as its last one ends
                done.release()

            def counted(_token: int) -> bool:
                tokens[0] += 1
                return True

            prompt = encoded[(caller * streams + turn) % len(encoded)]
            params = SamplingParams(max_tokens=new_tokens, min_tokens=new_tokens)
            self.batcher.submit(Request(prompt, params, counted, finished))

        started = time.perf_counter()
        for caller in range(callers):
            start(caller, 0)
        for _ in range(callers * streams):
            done.acquire()
        return round(tokens[0] / (time.perf_counter() - started), 2)

    def close(self) -> None:
        self.batcher.close()


def single_stream(url: str, folder: Path, rounds: int = 10) -> dict[str, Any]:
    """Served (continuous, pieces at the default interval and every token) against in process, one stream
    alone, taking turns."""
    from tuneship.client import Generator, TritonClient
    from tuneship.exporter.instruct.measure import GenaiRunner

    runner = GenaiRunner(folder)
    template_path = folder / "chat_template.jinja"
    template = template_path.read_text() if template_path.is_file() else None
    text = runner.tokenizer.apply_chat_template(json.dumps(SHORT), template_str=template, add_generation_prompt=True)
    ids = [int(t) for t in runner.tokenizer.encode(text)]
    runner.greedy(ids, 4)
    served: dict[str, list[float]] = {"continuous": [], "every token": []}
    local: list[float] = []
    with TritonClient(url) as client:
        for _ in range(rounds):
            for design, speeds in served.items():
                time.sleep(1.0)
                stream = Generator(client, MODELS[design]).stream(SHORT, max_tokens=NEW_TOKENS, min_tokens=NEW_TOKENS)
                for _piece in stream:
                    pass
                assert stream.generation is not None
                speeds.append(stream.generation.tokens_per_second)
            time.sleep(1.0)
            started = time.perf_counter()
            tokens, first = runner.greedy(ids, NEW_TOKENS, min_new_tokens=NEW_TOKENS)
            local.append((len(tokens) - 1) / (time.perf_counter() - started - first))
    del runner
    in_process = statistics.median(local)
    return {"in_process_tokens_per_second": round(in_process, 1),
            **{f"served_{design.replace(' ', '_')}_tokens_per_second": round(statistics.median(v), 1)
               for design, v in served.items()},
            **{f"served_{design.replace(' ', '_')}_share": round(statistics.median(v) / in_process, 3)
               for design, v in served.items()},
            "every_round": {"in_process": [round(x, 1) for x in local],
                            **{design: [round(x, 1) for x in v] for design, v in served.items()}}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench/generation_concurrency"))
    parser.add_argument("--workdir", type=Path, default=None, help="reuse a build (default: a temporary folder)")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)), help="concurrency levels")
    parser.add_argument("--quick", action="store_true", help="the levels only, continuous only (a quick look)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds over every level and design")
    parser.add_argument("--conversation-only", action="store_true",
                        help="only the nine-turn conversations (written to OUT_conversation.json)")
    args = parser.parse_args()
    levels_run = [int(x) for x in args.levels.split(",")]
    designs = {"continuous": MODELS["continuous"]} if args.quick else MODELS

    from tuneship.client.bench import builtin_reviews
    from tuneship.client.generation_bench import (
        format_level,
        review_prompts,
        run_generation_bench,
        write_generation_outputs,
    )
    from tuneship.deploy import ServeOptions, TritonServer

    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or Path(scratch) / "build"
        workdir.mkdir(parents=True, exist_ok=True)
        folder = workdir / "cpu-int4"
        variant = build(workdir) if not (folder / "genai_config.json").is_file() else None
        if variant is None:
            from tuneship.exporter.instruct.build import GenaiVariant

            variant = GenaiVariant("cpu-int4", "int4", folder, "cpu")
        repository = Path(scratch) / "repository"
        publish(repository, variant)
        prompts = review_prompts(builtin_reviews())
        levels: dict[str, list[Any]] = {name: [] for name in designs}
        with TritonServer(ServeOptions(model_repository=repository, grpc_port=0, http_port=0,
                                       metrics_port=0)) as server:
            if args.conversation_only:
                chats = {"session": conversations(server.grpc_url, MODELS["continuous"], True),
                         "no_session": conversations(server.grpc_url, MODELS["continuous"], False)}
                ratios = {name: round(c["turns"][-1]["ttft_ms"] / c["turns"][0]["ttft_ms"], 2)
                          for name, c in chats.items()}
                summary = {"ninth_turn_vs_first_ttft": ratios, "conversation": chats}
                path = args.out.parent / f"{args.out.name}_conversation.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(summary, indent=2) + "\n")
                print(json.dumps(summary["ninth_turn_vs_first_ttft"]), "wrote", path)
                return
            rounds: dict[tuple[str, int], list[Any]] = {}
            ceiling = InProcess(folder)
            in_process: dict[int, list[float]] = {}
            for round_ in range(args.rounds):
                for index, level in enumerate(levels_run):
                    ahead = (index + round_) % 2 == 0
                    for design, model in list(designs.items()) if ahead else list(designs.items())[::-1]:
                        time.sleep(2.0)
                        result = asyncio.run(run_generation_bench(server.grpc_url, model, [level], prompts,
                                                                  NEW_TOKENS, STREAMS_PER_CALLER, timeout_s=600,
                                                                  progress=False))[0]
                        rounds.setdefault((design, level), []).append(result)
                        print(f"{design:>12} {format_level(result)}", flush=True)
                    time.sleep(2.0)
                    in_process.setdefault(level, []).append(
                        ceiling.level(prompts, level, STREAMS_PER_CALLER, NEW_TOKENS))
                    print(f"{'in process':>12} {level:>5} {in_process[level][-1]:>11.1f} tok/s", flush=True)
            ceiling.close()
            medians = {level: statistics.median(values) for level, values in in_process.items()}
            batcher = {"aggregate_tokens_per_second": medians, "every_round": in_process,
                       "vs_one_stream": {str(c): round(v / medians[levels_run[0]], 2) for c, v in medians.items()}}
            print(json.dumps({"batcher_in_process": batcher["vs_one_stream"]}), flush=True)
            for (design, _level), results in rounds.items():
                # The round of median aggregate speed: a real measurement, not a blend of three.
                ordered = sorted(results, key=lambda r: r.aggregate_tokens_per_second)
                levels[design].append(ordered[len(ordered) // 2])
            spread = {f"{design} {level}": [r.aggregate_tokens_per_second for r in results]
                      for (design, level), results in rounds.items()}
            if args.quick:
                return
            hol = {design: asyncio.run(head_of_line(server.grpc_url, MODELS[design]))
                   for design in ("continuous",)}
            print(json.dumps({"head_of_line": hol}, indent=2), flush=True)
            chats = {"session": conversations(server.grpc_url, MODELS["continuous"], True),
                     "no_session": conversations(server.grpc_url, MODELS["continuous"], False)}
            for name, chat in chats.items():
                print(name, [(t["ttft_ms"], t["prompt_tokens"], t["cached_prompt_tokens"]) for t in chat["turns"]],
                      flush=True)
            single = single_stream(server.grpc_url, folder)
            print(json.dumps({"single_stream": single}, indent=2), flush=True)
    paths = write_generation_outputs(levels, args.out, "SmolLM2-135M int4 through Triton, 64-token streams")
    base = {row.concurrency: row.aggregate_tokens_per_second for row in levels["continuous"]}
    summary = {"aggregate_vs_one_stream": {str(c): round(v / base[1], 2) for c, v in base.items()},
               "aggregate_every_round": spread, "batcher_in_process": batcher, "head_of_line": hol,
               "single_stream": single, "conversation": chats,
               "ninth_turn_vs_first_ttft": {name: round(c["turns"][-1]["ttft_ms"] / c["turns"][0]["ttft_ms"], 2)
                                            for name, c in chats.items()},
               "levels": {design: [row.__dict__ for row in rows] for design, rows in levels.items()}}
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: summary[k] for k in ("aggregate_vs_one_stream",)}, indent=2))
    print("wrote", ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    main()
