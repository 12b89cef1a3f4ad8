"""What `tuneship search` is asked to do: its options (the command line is made from their fields) and its error."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneship.arguments import int_list, positive_float, positive_int

# `tuneship train`'s options a search takes as they are: what to learn from, not how (the space decides that).
DATA_OPTIONS = ("task", "data", "eval_file", "text_column", "label_column", "image_column", "encoding",
                "eval_fraction", "max_train_samples", "max_eval_samples", "seed", "system_prompt", "max_new_tokens",
                "exact_match_samples", "image_size")


class SearchError(Exception):
    """The search cannot run as asked; the message says what is wrong and where."""


@dataclass
class SearchOptions:
    """How to search; `training` holds the data and task options, as `tuneship train` takes them."""

    output: Path = field(default=Path("runs/search"), metadata={
        "help": "folder for the study, the trials' logs, checkpoints and models, pareto.json, trials.csv and "
                "pareto.png"})
    training: dict[str, Any] = field(default_factory=dict, metadata={"flag": None})
    models: tuple[str, ...] = field(default=(), metadata={
        "help": "a base model to try (repeatable): a built-in name (minilm, smollm2, mobilenet_v2, "
                "efficientnet_lite0) or a local Hugging Face folder (default: the task's)",
        "flag": "--model", "action": "append", "type": str})
    layers: tuple[int, ...] = field(default=(), metadata={
        "help": "encoders: also try shallower copies of each base model keeping these many bottom layers "
                "(e.g. 3,4; the top ones dropped: the cheapest speed lever for a classifier)", "type": int_list})
    methods: tuple[str, ...] = field(default=(), metadata={
        "help": "a method the search may pick (repeatable; default: every method of the space)",
        "flag": "--method", "action": "append", "type": str})
    space: Path | None = field(default=None, metadata={"type": Path,
        "help": "YAML or TOML file overriding the default space: `methods: [...]`, `precisions: [...]` and, per "
                "method, option: {low, high, log} | [choices] | value"})
    trials: int = field(default=20, metadata={"help": "trials to finish (every worker on the study together)",
                                              "type": positive_int})
    timeout_s: float | None = field(default=None, metadata={
        "help": "stop starting trials after this many seconds", "flag": "--timeout", "type": positive_float})
    concurrency: int = field(default=4, metadata={
        "help": "requests in flight for the throughput figure (p99 is measured at batch 1, one request at a time)",
        "type": positive_int})
    window_s: float = field(default=2.0, metadata={"help": "seconds per latency measurement window (up to 3)",
                                                   "flag": "--window", "type": positive_float})
    max_p99_ms: float | None = field(default=None, metadata={
        "help": "feasible trials' p99 at batch 1 is at most this (ms)", "type": positive_float})
    max_size_mb: float | None = field(default=None, metadata={
        "help": "feasible trials' served model is at most this big on disk (MB)", "type": positive_float})
    min_quality: float | None = field(default=None, metadata={
        "help": "feasible trials score at least this (the task's quality figure: accuracy, exact match)",
        "aliases": ("--min-accuracy",)})
    storage: str | None = field(default=None, metadata={
        "help": "SQLAlchemy URL of the study (default: sqlite in --output); postgresql://... lets several "
                "processes or machines share it, each started with the same command"})
    study_name: str = field(default="tuneship-search", metadata={"help": "the study's name in --storage"})
    resume: bool = field(default=False, metadata={
        "help": "continue the study in --output: finished trials are kept, an interrupted one runs again"})
    keep_all: bool = field(default=False, metadata={
        "help": "keep every trial's checkpoint and model (default: the front's only)"})
    prune: bool = field(default=True, metadata={
        "help": "stop a trial whose evaluation is below the median of earlier trials at the same point"})
    publish: bool = field(default=False, metadata={
        "help": "at the end, publish the most accurate feasible trial through the export gate"})
    publish_from: Path | None = field(default=None, metadata={"type": Path,
        "help": "publish from a finished search's --output (no training), with this run's constraints"})
    repository: Path = field(default=Path("model_repository"), metadata={
        "help": "where --publish publishes", "flag": "--model-repository"})
    name: str = field(default="search-best", metadata={"help": "model name --publish publishes under"})
    gate_samples: int = field(default=500, metadata={
        "help": "eval items each trial's export gate scores (the exporter's --gate-samples)", "type": positive_int})

    @property
    def task(self) -> str:
        return str(self.training.get("task", "text-classification"))

    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.output / 'study.db').resolve()}"

    @property
    def shared_storage(self) -> bool:
        """Several workers may share the study: an unfinished trial may be another worker's, alive."""
        return self.storage is not None and not self.storage.startswith("sqlite")
