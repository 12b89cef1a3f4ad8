"""Shared timing helpers for the export benchmarks (used by both venvs: plain numpy + onnxruntime)."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def benchmark_arguments(configure: Callable[[argparse.ArgumentParser], Any] | None = None) -> argparse.Namespace:
    """The options both export benchmarks take, so their runs stay comparable (`configure` adds more)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-samples", type=int, default=1000)
    if configure is not None:
        configure(parser)
    return parser.parse_args()


def interleaved_medians(calls: dict[str, Callable[[], Any]], rounds: int, per_round: int = 1,
                        warmup: int = 2, settle_s: float = 0.3) -> dict[str, float]:
    """Median seconds per call of each entry, measured round-robin.

    This VM's speed drifts by 10-20% over minutes (shared host); timing the contenders in turns, round by
    round, exposes them all to the same drift, so their ratios stay meaningful even when absolute times move.
    Each turn starts with a pause and one untimed call: the previous contender's workers (ONNX Runtime's and
    PyTorch's pools spin-wait after a call) would otherwise still be burning the two cores, which measured
    int8 at batch 1 twice as slow as alone.
    """
    for call in calls.values():
        for _ in range(warmup):
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            time.sleep(settle_s)
            call()
            started = time.perf_counter()
            for _ in range(per_round):
                call()
            samples[name].append((time.perf_counter() - started) / per_round)
    return {name: statistics.median(values) for name, values in samples.items()}


def token_batch(tokenizer: Any, texts: list[str], batch: int, length: int, names: list[str]) -> dict[str, Any]:
    """`batch` real texts, tokenized and padded (or truncated) to exactly `length` tokens."""
    chosen = [texts[i % len(texts)] for i in range(batch)]
    encoded = tokenizer(chosen, truncation=True, max_length=length, padding="max_length", return_tensors="np")
    return {n: encoded[n].astype(np.int64) for n in names}


def ort_session(path: str, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def ort_accuracy(session: Any, tokenizer: Any, texts: list[str], label_ids: list[int], max_length: int,
                 names: list[str]) -> float:
    correct = 0
    for start in range(0, len(texts), 64):
        encoded = tokenizer(texts[start:start + 64], truncation=True, max_length=max_length, padding=True,
                            return_tensors="np")
        feeds = {n: encoded[n].astype(np.int64) for n in names if n in encoded}
        logits = session.run(None, feeds)[0]
        correct += int((logits.argmax(-1) == np.asarray(label_ids[start:start + 64])).sum())
    return correct / len(texts)
