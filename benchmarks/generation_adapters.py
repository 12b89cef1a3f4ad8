"""Adapters per request: do adapters answer as their merged checkpoints do, and what does serving them cost?
(issue 23 part 5, BENCHMARKS.md)

    .venv/bin/python benchmarks/generation_adapters.py runs/instruct-rt runs/instruct-tw \\
        --out benchmarks/results/generation_adapters.json

Two LoRA instruction tunes of one base model (different tasks) go through the real export: the first's base
model is published (`tuneship export --base-model`, int4 chosen by the gate as usual), then each tune as an
adapter of it (`--adapter-of`), whose gate answers the tune's held-out prompts through the served batcher with
the adapter and compares them with the merged checkpoint's PyTorch answers. For comparison each merged checkpoint
is also built int4 the way a merged export is, and answers the same prompts through the batcher.

Then decode throughput through the served batcher in process (8 streams of 64 tokens, and 1 stream): the base
graph with no adapter loaded; the adapter bank loaded but the requests on the base model; every request on one
adapter; the requests split between the two adapters (in one batch). Rounds interleaved, medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TOKENS = 8
SPEED_TOKENS = 64


def greedy_answers(folder: Path, prompts: list[list[int]], adapter: Any, slots: int) -> list[list[int]]:
    from tuneship.exporter.instruct.measure import batched_greedy

    return batched_greedy(folder, prompts, TOKENS, slots, adapter)


def speed(batcher: Any, prompts: list[list[int]], adapters: list[str | None]) -> float:
    """Aggregate tokens/s of len(adapters) streams submitted together, SPEED_TOKENS each."""
    from tuneship.serving import Request, SamplingParams

    done = threading.Semaphore(0)
    started = time.perf_counter()
    with batcher.condition:
        for prompt, adapter in zip(prompts, adapters, strict=False):
            params = SamplingParams(max_tokens=SPEED_TOKENS, min_tokens=SPEED_TOKENS, adapter=adapter)
            batcher.submit(Request(prompt, params, lambda _t: True, lambda _r, _e: done.release()))
    for _ in adapters:
        done.acquire()
    return len(adapters) * SPEED_TOKENS / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs=2, type=Path, help="two LoRA instruct checkpoints of one base model")
    parser.add_argument("--prompts", type=int, default=200, help="held-out prompts per task")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the repository and builds here")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/generation_adapters.json"))
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from tuneship.exporter import InstructExportOptions, export_checkpoint
    from tuneship.exporter.instruct.build import build_variant
    from tuneship.serving import Engine, LoraWeights
    from tuneship.trainer import normalise, prompt_ids, read_checkpoint, read_conversations

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="adapters-bench-"))
    repository = workdir / "repo"
    names = [str(read_checkpoint(c).manifest.get("data", {}).get("train", f"tune{i}")).split()[0] for i, c in
             enumerate(args.checkpoints)]
    if not (repository / "chat" / "1").is_dir():
        export_checkpoint(InstructExportOptions(checkpoint=args.checkpoints[0], name="chat", repository=repository,
                                                base_model=True, gate_samples=args.prompts))
    for checkpoint, name in zip(args.checkpoints, names, strict=True):
        if not (repository / "chat" / "adapters" / name).is_dir():
            export_checkpoint(InstructExportOptions(checkpoint=checkpoint, name=name, repository=repository,
                                                    adapter_of="chat", gate_samples=args.prompts, force=True))
    version = max((p for p in (repository / "chat").iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    adapters = {name: LoraWeights.load(str(repository / "chat" / "adapters" / name)) for name in names}
    published = json.loads((repository / "chat" / "export_report.json").read_text())

    quality: list[dict[str, Any]] = []
    task_prompts: dict[str, list[list[int]]] = {}
    for checkpoint, name in zip(args.checkpoints, names, strict=True):
        info = read_checkpoint(checkpoint)
        tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
        held_out = read_conversations(info.eval_data)[:args.prompts]
        prompts = [prompt_ids(tokenizer, c) for c in held_out]
        task_prompts[name] = prompts
        merged_build = workdir / f"merged-{name}"
        if not (merged_build / "cpu-int4" / "genai_config.json").is_file():
            merged_build.mkdir(parents=True, exist_ok=True)
            build_variant(checkpoint, merged_build, "cpu", "int4")

        def score(tokens: list[list[int]], held_out: list[Any] = held_out, tokenizer: Any = tokenizer) -> float:
            answers = [tokenizer.decode(t, skip_special_tokens=True).strip() for t in tokens]
            return round(sum(normalise(a) == normalise(c.answer) for a, c in zip(answers, held_out, strict=True))
                         / len(held_out), 4)

        report = json.loads((repository / "chat" / "adapters" / name / "export_report.json").read_text())
        gate = report["variants"][0]
        served = greedy_answers(version, prompts, adapters[name], 8)
        base_served = greedy_answers(version, prompts, None, 8)
        merged_int4 = greedy_answers(merged_build / "cpu-int4", prompts, None, 8)
        quality.append({
            "task": name, "prompts": len(prompts),
            "merged_pytorch_fp32": gate["merged_exact_match"],
            "adapter_served": score(served),
            "merged_int4_served": score(merged_int4),
            "base_served": score(base_served),
            "adapter_vs_merged_pytorch_identical": gate["agreement"],
            "adapter_vs_merged_int4_identical": round(sum(a == b for a, b in zip(served, merged_int4, strict=True))
                                                      / len(prompts), 4),
        })
        print(json.dumps(quality[-1]), flush=True)

    mix = task_prompts[names[0]][:4] + task_prompts[names[1]][:4]
    cases: dict[str, tuple[bool, list[str | None]]] = {
        "8 base, no adapter loaded": (False, [None] * 8),
        "8 base, 2 adapters loaded": (True, [None] * 8),
        f"8 on {names[0]}": (True, [names[0]] * 8),
        f"4 on {names[0]} + 4 on {names[1]}": (True, [names[0]] * 4 + [names[1]] * 4),
        "1 base, no adapter loaded": (False, [None]),
        f"1 on {names[0]}": (True, [names[0]]),
    }
    # Without the prefix cache: every round computes its prompts, as the figures before it did.
    plain = Engine(str(version), slots=8, prefix_cache_bytes=0)
    banked = Engine(str(version), slots=8, prefix_cache_bytes=0)
    banked.set_adapters(adapters)
    speeds: dict[str, list[float]] = {case: [] for case in cases}
    try:
        for batcher in (plain, banked):  # warm up
            speed(batcher, mix, [None] * 8)
        for _ in range(args.rounds):
            for case, (loaded, rows) in cases.items():
                speeds[case].append(speed(banked if loaded else plain, mix, rows))
    finally:
        plain.close()
        banked.close()
    throughput = {case: round(statistics.median(v), 1) for case, v in speeds.items()}
    for case, value in throughput.items():
        print(f"{case:<36} {value:>7.1f} tokens/s", flush=True)
    result = {"machine": "2-core CPU", "base": published.get("chosen"), "date": time.strftime("%Y-%m-%d"),
              "quality": quality, "tokens_per_second": throughput, "rounds": args.rounds,
              "speed_tokens": SPEED_TOKENS, "checkpoints": [str(c) for c in args.checkpoints]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
