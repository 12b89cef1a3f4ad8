"""onnxruntime-genai's own generator as the reference the served batcher's answers are compared with."""

from __future__ import annotations

from typing import Any


def greedy_alone(model: Any, prompt: list[int], count: int) -> list[int]:
    """Exactly `count` greedy tokens of `prompt` from an og.Generator of its own (no batch-mates)."""
    import onnxruntime_genai as og

    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt) + count, min_length=len(prompt) + count)
    generator = og.Generator(model, params)
    generator.append_tokens([prompt])
    tokens = []
    while not generator.is_done():
        generator.generate_next_token()
        tokens.append(int(generator.get_next_tokens()[0]))
    return tokens
