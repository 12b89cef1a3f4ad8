"""What `tuneship tune` is asked to do: the options (the CLI is built from their help) and its error."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PERCENTILES = (50, 90, 95, 99)
REPORTS = ("export_report.json", "tuning_report.json", "tuning.png", "updates.jsonl", "update_report.json")


class TuneError(Exception):
    """The model cannot be tuned as asked; the message says why and what to do."""


@dataclass
class TuneOptions:
    model: str = field(metadata={
        "help": "the classifier to tune (a text or image ensemble, or a fused text classifier)"})
    latency_budget_ms: float = field(metadata={"help": "largest allowed latency percentile, milliseconds"})
    repository: Path = field(default=Path("model_repository"), metadata={"help": "Triton model repository"})
    percentile: int = field(default=99, metadata={"help": "which latency percentile the budget bounds"})
    concurrency: int = field(default=8, metadata={"help": "requests in flight while measuring"})
    batch_size: int = field(default=1, metadata={"help": "texts per request"})
    window_s: float = field(default=2.0, metadata={"help": "seconds per measurement window (up to 3 windows)"})
    max_batch_sizes: tuple[int, ...] = field(default=(16, 64), metadata={"help": "max_batch_size values"})
    queue_delays_us: tuple[int, ...] = field(default=(0, 2000, 8000), metadata={
        "help": "dynamic batcher max_queue_delay_microseconds values"})
    instance_counts: tuple[int, ...] = field(default=(1, 2), metadata={"help": "model instance counts"})
    intra_op_threads: tuple[int, ...] = field(default=(0, 1), metadata={
        "help": "ONNX Runtime intra-op thread counts (0: all cores)"})
    texts: Sequence[Any] = field(default=(), metadata={
        "help": "what one request row carries: texts (default: the bundled reviews), or encoded images for an "
                "image classifier (required)"})
    write: bool = field(default=True, metadata={"help": "write the chosen configuration back"})
    variants: bool = field(default=True, metadata={
        "help": "also sweep the precision variants the export kept (tuneship export --keep-variants)"})
    invariance_margin: float = field(default=0.10, metadata={
        "help": "a batch-invariant variant is taken over a faster one that is not, up to this share slower"})
    compare_fused: bool = field(default=True, metadata={
        "help": "a text ensemble: also measure the same graph in the fused layout (tuneship export --layout fused) "
                "at the chosen settings, as advice (nothing is switched)"})
