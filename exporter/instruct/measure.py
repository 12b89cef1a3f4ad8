"""Checks and figures for onnxruntime-genai variants: greedy tokens against PyTorch's, exact-match accuracy of
greedy answers, time to first token and decode speed, all in this process."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class GenaiReport:
    name: str
    precision: str
    size_bytes: int
    validated: str = ""  # "tokens match PyTorch", or what differs
    exact_match: float | None = None
    agreement: float | None = None  # share of gate prompts answered exactly as the fp32 variant did
    drop_points: float | None = None
    ttft_ms: float = float("nan")
    tokens_per_second: float = float("nan")
    passed: bool = False
    note: str = ""
    answers: list[str] = field(default_factory=list, repr=False)


class GenaiRunner:
    """One loaded variant; greedy decoding of token ids."""

    def __init__(self, path: Path) -> None:
        import onnxruntime_genai as og

        self.og = og
        config = og.Config(str(path))
        # Both of this machine's cores: onnxruntime-genai's default thread pool used one (see the served model).
        config.overlay(json.dumps({"model": {"decoder": {"session_options": {
            "intra_op_num_threads": len(os.sched_getaffinity(0)), "inter_op_num_threads": 1}}}}))
        self.model = og.Model(config)
        self.tokenizer = og.Tokenizer(self.model)
        self.eos = set(int(t) for t in self.tokenizer.eos_token_ids)

    def greedy(self, prompt: Sequence[int], max_new_tokens: int, min_new_tokens: int = 0) -> tuple[list[int], float]:
        """New tokens (EOS excluded) and the seconds to the first one."""
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(max_length=len(prompt) + max_new_tokens, do_sample=False,
                                  min_length=len(prompt) + min_new_tokens)
        generator = self.og.Generator(self.model, params)
        started = time.perf_counter()
        generator.append_tokens([list(prompt)])
        tokens: list[int] = []
        first = 0.0
        while not generator.is_done():
            generator.generate_next_token()
            token = int(generator.get_next_tokens()[0])
            if not tokens and not first:
                first = time.perf_counter() - started
            if token in self.eos:
                break
            tokens.append(token)
        return tokens, first


def batched_greedy(path: Path, prompts: Sequence[Sequence[int]], max_new_tokens: int, slots: int,
                   adapter: Any = None) -> list[list[int]]:
    """Greedy tokens (EOS excluded) of every prompt through the serving engine, all submitted at once: each answer
    computed among up to `slots - 1` others, as it will be served; with `adapter` (a LoraWeights) through that
    adapter on the base model at `path`. The prefix cache is off: each answer is computed whole."""
    import threading

    from tuneship.serving import Engine, Request, SamplingParams

    engine = Engine(str(path), slots=slots, prefix_cache_bytes=0)
    name = None
    if adapter is not None:
        engine.set_adapters({adapter.name: adapter})
        name = adapter.name
    answers: list[list[int]] = [[] for _ in prompts]
    done = threading.Semaphore(0)
    errors: list[BaseException] = []

    def finished(_reason: str, error: BaseException | None) -> None:
        if error is not None:
            errors.append(error)
        done.release()

    def collect(tokens: list[int]) -> Callable[[int], bool]:
        def on_token(token: int) -> bool:
            tokens.append(token)
            return True

        return on_token

    params = SamplingParams(max_tokens=max_new_tokens, adapter=name)
    try:
        for prompt, tokens in zip(prompts, answers, strict=True):
            engine.submit(Request(list(prompt), params, collect(tokens), finished))
        for _ in prompts:
            done.acquire()
    finally:
        engine.close()
    if errors:
        raise errors[0]
    return answers


def served_greedy(path: Path, prompts: list[list[int]], max_tokens: int, slots: int,
                  adapter_dir: Path | None = None) -> list[list[int]]:
    """Greedy answers (EOS excluded) as they will be served: through the serving engine, `slots` at a time; with
    `adapter_dir` (a published adapter's folder) through that adapter."""
    adapter = None
    if adapter_dir is not None:
        from tuneship.serving import LoraWeights

        adapter = LoraWeights.load(str(adapter_dir))
    return batched_greedy(path, prompts, max_tokens, max(slots, 1), adapter)


def torch_greedy(model: Any, prompt: Sequence[int], max_new_tokens: int, eos: set[int]) -> list[int]:
    import torch

    with torch.inference_mode():
        out = model.generate(input_ids=torch.tensor([list(prompt)]), attention_mask=torch.ones(1, len(prompt),
                             dtype=torch.long), max_new_tokens=max_new_tokens, do_sample=False)
    tokens = []
    for token in out[0, len(prompt):].tolist():
        if token in eos:
            break
        tokens.append(int(token))
    return tokens


def first_difference(a: Sequence[int], b: Sequence[int]) -> int | None:
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return None if len(a) == len(b) else min(len(a), len(b))


def decode_speed(runner: GenaiRunner, prompt: Sequence[int], new_tokens: int = 64, repeats: int = 3) -> tuple[float,
                                                                                                          float]:
    """(median time to first token in ms, median tokens per second after the first) for `new_tokens` tokens."""
    import statistics

    firsts, rates = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        tokens, first = runner.greedy(prompt, new_tokens, min_new_tokens=new_tokens)
        total = time.perf_counter() - started
        firsts.append(first * 1000)
        rates.append((len(tokens) - 1) / max(total - first, 1e-9))
    return round(statistics.median(firsts), 1), round(statistics.median(rates), 1)
