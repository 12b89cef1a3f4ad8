"""Do answers depend on the company they keep, and what does a constrained answer buy? (issue 23, BENCHMARKS.md)

    .venv/bin/python benchmarks/generation_answers.py --tuned runs/instruct --out runs/bench/generation_answers.json

On the held-out sentiment instructions of an instruct checkpoint (its `eval.jsonl`, the prompts the exporter's
gate reads; the first 200), for the base SmolLM2-135M-Instruct and the tuned checkpoint, both built int4 the way
the exporter builds them, greedy answers of 8 tokens:

- onnxruntime-genai's generator alone (what the exporter's gate measured before continuous batching);
- the serving engine (`serving/engine.py`, prefix cache off) alone, and each prompt among 1, 3 and 7 others: the
  prompts go in groups of 2, 4 and 8 submitted together, so they are prefilled one by one and decoded in one batch;
- a constrained answer, `guided_choice` ["positive", "negative"] (the same grammar the served engine masks its
  rows with, run by onnxruntime-genai's guidance), against the free answer.

For each: exact match (the first word, as the exporter scores it) and the share of answers identical to the
batcher's alone; and for 64-token answers of the first 50 prompts, the share identical alone and among 7 others.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPTS = 200
TOKENS = 8
LONG_TOKENS = 64
COMPANY = (0, 1, 3, 7)
CHOICES = ["positive", "negative"]


def built(checkpoint: Path, workdir: Path) -> Path:
    from tuneship.exporter.instruct.build import build_variant

    folder = workdir / "cpu-int4"
    if not (folder / "genai_config.json").is_file():
        workdir.mkdir(parents=True, exist_ok=True)
        build_variant(checkpoint, workdir, "cpu", "int4")
    return folder


def batched(folder: Path, prompts: list[list[int]], group: int, tokens: int = TOKENS) -> list[list[int]]:
    """Greedy tokens of every prompt, `group` prompts submitted together into `group` slots (`tokens` each, at
    least that many when it is LONG_TOKENS)."""
    from tuneship.serving import Engine, Request, SamplingParams

    batcher = Engine(str(folder), slots=group, prefix_cache_bytes=0)
    answers: list[list[int]] = [[] for _ in prompts]
    try:
        for start in range(0, len(prompts), group):
            done = threading.Semaphore(0)
            members = range(start, min(start + group, len(prompts)))
            for index in members:
                params = SamplingParams(max_tokens=tokens, min_tokens=tokens if tokens == LONG_TOKENS else 0)
                batcher.submit(Request(prompts[index], params, lambda t, i=index: answers[i].append(t) is None,
                                       lambda reason, error, done=done: done.release()))
            for _ in members:
                assert done.acquire(timeout=120)
    finally:
        batcher.close()
    return answers


def generator_alone(folder: Path, prompts: list[list[int]], choices: list[str] | None = None) -> list[list[int]]:
    import json

    import onnxruntime_genai as og

    model = og.Model(str(folder))
    eos = {int(t) for t in og.Tokenizer(model).eos_token_ids}
    guide = ("lark_grammar", "start: " + " | ".join(json.dumps(c) for c in choices)) if choices else None
    answers = []
    for prompt in prompts:
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(prompt) + TOKENS)
        if guide is not None:
            params.set_guidance(*guide)
        generator = og.Generator(model, params)
        generator.append_tokens([prompt])
        tokens: list[int] = []
        while not generator.is_done():
            generator.generate_next_token()
            token = int(generator.get_next_tokens()[0])
            if token in eos:
                break
            tokens.append(token)
        answers.append(tokens)
    return answers


def measure(name: str, checkpoint: Path, workdir: Path, conversations: list[Any]) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from tuneship.trainer import normalise, prompt_ids

    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    folder = built(checkpoint, workdir / name)
    prompts = [prompt_ids(tokenizer, c) for c in conversations]
    expected = [normalise(c.answer) for c in conversations]

    def text(tokens: list[int]) -> str:
        return str(tokenizer.decode(tokens, skip_special_tokens=True)).strip()

    def exact(answers: list[list[int]]) -> float:
        return round(sum(normalise(text(a)) == e for a, e in zip(answers, expected, strict=True)) / len(expected), 4)

    runs: dict[str, list[list[int]]] = {}
    seconds: dict[str, float] = {}
    for label, run in [("generator_alone", lambda: generator_alone(folder, prompts)),
                       *[(f"batcher_among_{k}", lambda k=k: batched(folder, prompts, k + 1)) for k in COMPANY],
                       ("generator_choice", lambda: generator_alone(folder, prompts, CHOICES))]:
        started = time.perf_counter()
        runs[label] = run()
        seconds[label] = round(time.perf_counter() - started, 1)
        print(f"{name} {label}: exact match {exact(runs[label]):.3f} ({seconds[label]} s)", flush=True)
    # Long answers too (64 tokens, the first 50 prompts, the answer forced on past its end): a near tie that 8
    # tokens never reach would show here.
    long_prompts = prompts[:50]
    alone_long = batched(folder, long_prompts, 1, LONG_TOKENS)
    among_long = batched(folder, long_prompts, 8, LONG_TOKENS)
    positions = [next((i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), None)
                 for a, b in zip(alone_long, among_long, strict=True)]
    long = {"prompts": len(long_prompts), "tokens": LONG_TOKENS,
            "identical_among_7": round(sum(p is None for p in positions) / len(positions), 4),
            "first_difference_at": sorted(p for p in positions if p is not None)}
    print(f"{name} 64-token answers identical among 7: {long['identical_among_7']:.3f}", flush=True)
    reference = runs["batcher_among_0"]
    result = {label: {"exact_match": exact(answers),
                      "identical_to_batcher_alone": round(sum(a == b for a, b in zip(answers, reference,
                                                                                      strict=True)) / len(prompts), 4),
                      "seconds": seconds[label]}
              for label, answers in runs.items()}
    differing = [i for i, (a, b) in enumerate(zip(runs["batcher_among_7"], reference, strict=True)) if a != b]
    result["long_answers"] = long
    result["examples_differing_among_7"] = [{"alone": text(reference[i]), "among_7": text(runs["batcher_among_7"][i]),
                                             "expected": expected[i]} for i in differing[:5]]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tuned", type=Path, required=True, help="an instruct checkpoint (with its eval.jsonl)")
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench/generation_answers_build"))
    parser.add_argument("--prompts", type=int, default=PROMPTS)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/generation_answers.json"))
    args = parser.parse_args()

    from tuneship.trainer.instruct.base_model import resolve_causal_lm
    from tuneship.trainer.instruct.data import read_conversations

    conversations = read_conversations(args.tuned / "eval.jsonl", limit=args.prompts)
    results = {"prompts": len(conversations), "tokens": TOKENS,
               "base": measure("base", resolve_causal_lm("smollm2"), args.workdir, conversations),
               "tuned": measure("tuned", args.tuned, args.workdir, conversations)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
