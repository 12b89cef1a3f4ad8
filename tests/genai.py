"""onnxruntime-genai's own generator as the reference the served batcher's answers are compared with, and corrected
answers as `tuneship feedback export` writes them, for the update tests."""

from __future__ import annotations

import json
from pathlib import Path
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


OPPOSITE = {"positive": "negative", "negative": "positive"}


def corrections(path: Path, checkpoint: Path, flip: bool) -> Path:
    """The held-out review prompts the checkpoint was measured on, plus more from the same set, answered right (or,
    with `flip`, wrong): what `tuneship feedback export` writes from corrections."""
    from tuneship.trainer import load_instructions, read_conversations

    seen = {json.dumps(c.prompt) for c in read_conversations(checkpoint / "train.jsonl")} \
        if (checkpoint / "train.jsonl").is_file() else set()
    conversations = read_conversations(checkpoint / "eval.jsonl")
    conversations += [c for c in load_instructions("rotten-tomatoes").conversations[:400]
                      if json.dumps(c.prompt) not in seen][:32]
    with path.open("w", encoding="utf-8") as handle:
        for conversation in conversations:
            answer = OPPOSITE[conversation.answer] if flip else conversation.answer
            handle.write(json.dumps({"messages": [*conversation.prompt, {"role": "assistant",
                                                                         "content": answer}]}) + "\n")
    return path
