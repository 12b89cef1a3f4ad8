"""`tuneship bench`'s options, declared once: its flags are made from them (tuneship.options)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from tuneship.arguments import existing_path, non_negative_int, positive_float, positive_int


def concurrency_levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} must be comma-separated positive integers, e.g. 1,4,16") from None
    if not levels or any(level < 1 for level in levels):
        raise argparse.ArgumentTypeError(f"{text!r} must be comma-separated positive integers, e.g. 1,4,16")
    return levels


@dataclass
class BenchOptions:
    """A closed-loop load test: for a classifier each concurrency level runs until three windows agree; for a
    generator each caller streams a fixed number of equally long answers."""

    wait_s: float | None = field(default=None, metadata={
        "help": "wait up to N seconds for the server and model to be ready (default: no wait)", "flag": "--wait",
        "type": positive_float})
    concurrency: tuple[int, ...] = field(default=(1, 2, 4, 8, 16, 32), metadata={
        "help": "comma-separated concurrency levels (a generator: 1,2,4,8 unless given)", "type": concurrency_levels,
        "metavar": "LEVELS"})
    batch_size: int = field(default=1, metadata={"help": "texts per request", "type": positive_int})
    texts: Path | None = field(default=None, metadata={
        "help": "file of texts, one per line (default: reviews shipped with the client)", "type": existing_path})
    images: str | None = field(default=None, metadata={
        "help": "an image classifier: folder of images to send (each request row one image)", "type": str})
    window_s: float = field(default=2.0, metadata={"help": "measurement window, seconds", "flag": "--window",
                                                   "type": positive_float})
    max_windows: int = field(default=10, metadata={"help": "give up on stability after this many windows",
                                                   "type": positive_int})
    tolerance: float = field(default=0.10, metadata={"help": "stable: 3 windows within this share",
                                                     "type": positive_float})
    max_tokens: int = field(default=64, metadata={
        "help": "a generator: tokens in every streamed answer (its minimum and maximum)", "type": positive_int})
    streams: int = field(default=4, metadata={
        "help": "a generator: answers each caller streams one after another per level", "type": positive_int})
    stream_interval_ms: int | None = field(default=None, metadata={
        "help": "a generator: ask for a piece at most every N ms (0: one per token, so the inter-token latency is "
                "per token; default: the model's --stream-interval-ms)", "type": non_negative_int})
    output: Path = field(default=Path("runs/bench/latency"), metadata={
        "help": "prefix of the .csv, .json and .png written"})
