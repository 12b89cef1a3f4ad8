"""Generation speed (BENCHMARKS.md): PyTorch eager, onnxruntime-genai in process, and streaming through Triton.

    .venv/bin/python benchmarks/generation.py runs/instruct --repository model_repository --model chat \
        --out runs/bench/generation.json

All in one process, on the same prompt (46 tokens with the chat template) and 64 greedy tokens (min_tokens forces
the full length on every side): PyTorch eager `generate` on the checkpoint, onnxruntime-genai on the published
version's model folder, and the same folder served by the embedded Triton, streamed to `Generator` (time to first
token as the client sees it; tokens/s after the first). The three take turns, one generation each per round, so a
change in this shared machine's speed during the run reaches all three alike, with a pause before each (the last
one's worker threads spin on for a while); medians over the rounds. Then 1, 2
and 4 concurrent streams (aggregate tokens/s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPT = "Is this review positive or negative?\n\nA gripping, beautifully acted film."  # 46 tokens, as in the issue
NEW_TOKENS = 64
ROUNDS = 7
PAUSE_S = 1.0

Measure = Callable[[], tuple[float, float]]  # one generation: (seconds to the first token, tokens/s after it)


def pytorch(checkpoint: Path, ids: list[int]) -> Measure:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(checkpoint)).eval()
    inputs = torch.tensor([ids])
    with torch.inference_mode():
        model.generate(input_ids=inputs, max_new_tokens=4, do_sample=False)  # warm-up

    def once() -> tuple[float, float]:
        with torch.inference_mode():
            started = time.perf_counter()
            model.generate(input_ids=inputs, max_new_tokens=1, do_sample=False)
            first = time.perf_counter() - started
            started = time.perf_counter()
            out = model.generate(input_ids=inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                                 do_sample=False)
            total = time.perf_counter() - started
        return first, (out.shape[1] - len(ids) - 1) / max(total - first, 1e-9)

    return once


def in_process(folder: Path, ids: list[int]) -> Measure:
    from tuneship.exporter.instruct.measure import GenaiRunner

    runner = GenaiRunner(folder)
    runner.greedy(ids, 4)  # warm-up

    def once() -> tuple[float, float]:
        started = time.perf_counter()
        tokens, first = runner.greedy(ids, NEW_TOKENS, min_new_tokens=NEW_TOKENS)
        total = time.perf_counter() - started
        return first, (len(tokens) - 1) / max(total - first, 1e-9)

    return once


def served(client: Any, model: str) -> Measure:
    from tuneship.client import Generator

    messages = [{"role": "user", "content": PROMPT}]
    generator = Generator(client, model)
    generator.generate(messages, max_tokens=4)  # warm-up

    def once() -> tuple[float, float]:
        stream = generator.stream(messages, max_tokens=NEW_TOKENS, min_tokens=NEW_TOKENS)
        for _piece in stream:
            pass
        assert stream.generation is not None and stream.generation.tokens == NEW_TOKENS
        return stream.generation.time_to_first_token_s, stream.generation.tokens_per_second

    return once


def aggregate(url: str, model: str, streams: int) -> float:
    from tuneship.client import AsyncGenerator, AsyncTritonClient

    messages = [{"role": "user", "content": PROMPT}]

    async def run() -> float:
        async with AsyncTritonClient(url) as client:
            generator = AsyncGenerator(client, model)
            started = time.perf_counter()
            answers = await asyncio.gather(*(generator.generate(messages, max_tokens=NEW_TOKENS,
                                                                min_tokens=NEW_TOKENS) for _ in range(streams)))
            return sum(a.tokens for a in answers) / (time.perf_counter() - started)

    return asyncio.run(run())


def summary(samples: list[tuple[float, float]]) -> dict[str, Any]:
    return {"ttft_ms": round(1000 * statistics.median(s[0] for s in samples), 1),
            "tokens_per_second": round(statistics.median(s[1] for s in samples), 1),
            "ttft_ms_each": [round(1000 * s[0], 1) for s in samples],
            "tokens_per_second_each": [round(s[1], 1) for s in samples]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="instruct checkpoint (the PyTorch baseline)")
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--model", default="chat")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/generation.json"))
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from tuneship.client import TritonClient
    from tuneship.deploy import ServeOptions, TritonServer
    from tuneship.repository import existing_versions

    tokenizer = AutoTokenizer.from_pretrained(str(args.checkpoint))
    ids = list(tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True,
                                             return_dict=True)["input_ids"])
    version = existing_versions(args.repository / args.model)[-1]
    folder = args.repository / args.model / str(version)
    report = json.loads((args.repository / args.model / "export_report.json").read_text())
    results: dict[str, Any] = {"prompt_tokens": len(ids), "new_tokens": NEW_TOKENS, "variant": report["chosen"],
                               "version": version, "rounds": args.rounds}
    with TritonServer(ServeOptions(model_repository=args.repository, grpc_port=0, http_port=0,
                                   metrics_port=0)) as server, TritonClient(server.grpc_url) as client:
        paths = {"pytorch_eager": pytorch(args.checkpoint, ids), "in_process_genai": in_process(folder, ids),
                 "served_stream": served(client, args.model)}
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, once in paths.items():
                # A pause first: ONNX Runtime's and PyTorch's worker threads spin for a while after a run, and
                # on two cores the next path's first token would pay for the last path's spinning.
                time.sleep(PAUSE_S)
                samples[name].append(once())
        results.update({name: summary(values) for name, values in samples.items()})
        results["served_stream"]["aggregate_tokens_per_second"] = {
            str(n): round(aggregate(server.grpc_url, args.model, n), 1) for n in (1, 2, 4)}
    served_rate = results["served_stream"]["tokens_per_second"]
    results["served_vs_in_process"] = round(served_rate / results["in_process_genai"]["tokens_per_second"], 3)
    results["served_vs_pytorch"] = round(served_rate / results["pytorch_eager"]["tokens_per_second"], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
