"""What `tuneship tune` is asked to do: the options (the CLI is built from their help) and its error."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneship.arguments import non_negative_float, positive_float, positive_int
from tuneship.repository import REPORTS as FILES_BESIDE_A_MODEL

PERCENTILES = (50, 90, 95, 99)
REPORTS = FILES_BESIDE_A_MODEL


class TuneError(Exception):
    """The model cannot be tuned as asked; the message says why and what to do."""


@dataclass
class TuneOptions:
    """What to tune and how; `tuneship tune`'s flags are made from these fields (tuneship.options)."""

    model: str = field(metadata={
        "help": "the model to tune (a text or image ensemble, a single-model text classifier, or a generator)"})
    latency_budget_ms: float = field(metadata={
        "help": "largest allowed latency percentile (ms; a generator: time to first token)", "type": positive_float})
    repository: Path = field(default=Path("model_repository"), metadata={"help": "Triton model repository",
                                                                         "flag": "--model-repository"})
    percentile: int = field(default=99, metadata={"help": "the latency percentile the budget bounds",
                                                  "choices": PERCENTILES})
    concurrency: int = field(default=8, metadata={"help": "requests (a generator: streams) in flight while "
                                                          "measuring", "type": positive_int})
    max_concurrencies: tuple[int, ...] = field(default=(2, 4, 8, 16), metadata={
        "help": "a generator: max_concurrency values to try (rows decoded together)"})
    max_tokens: int = field(default=64, metadata={"help": "a generator: tokens per streamed answer",
                                                  "type": positive_int})
    batch_size: int = field(default=1, metadata={"help": "texts per request", "type": positive_int})
    window_s: float = field(default=2.0, metadata={"help": "seconds per measurement window (up to 3)",
                                                   "flag": "--window", "type": positive_float})
    max_batch_sizes: tuple[int, ...] = field(default=(16, 64), metadata={"help": "max_batch_size values to try"})
    queue_delays_us: tuple[int, ...] = field(default=(0, 2000, 8000), metadata={
        "help": "dynamic batcher queue delays to try (microseconds)"})
    instance_counts: tuple[int, ...] = field(default=(1, 2), metadata={"help": "model instance counts to try"})
    intra_op_threads: tuple[int, ...] = field(default=(0, 1), metadata={
        "help": "ONNX Runtime intra-op thread counts to try (0: all cores)"})
    texts: Sequence[Any] = field(default=(), metadata={
        "help": "what one request row carries: texts (default: the bundled reviews), or encoded images for an "
                "image classifier (required); on the command line --texts FILE or --images FOLDER",
        "flag": None})
    write: bool = field(default=True, metadata={
        "help": "write the chosen configuration back (the command line's --dry-run turns it off)", "flag": None})
    variants: bool = field(default=True, metadata={
        "help": "also sweep the precision variants the export kept (tuneship export --keep-variants)"})
    invariance_margin: float = field(default=0.10, metadata={
        "help": "percent: a batch-invariant variant is taken over a faster one that is not, up to this much slower",
        "type": non_negative_float, "cli_scale": 100})
    compare_single_model: bool = field(default=True, metadata={
        "help": "a text ensemble: also measure the same graph and settings as one model (tuneship export --layout "
                "single) and say how it compares; nothing is switched (--compare-fused: its old name)",
        "aliases": ("--compare-fused",)})
