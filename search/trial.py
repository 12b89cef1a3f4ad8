"""One trial, end to end: train the chosen configuration, publish it through the export gate into the search's
repository, and measure it served. Its output goes to the trial's log, so the search's table stays readable."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tuneship.search.measure import Measurer, folder_mb
from tuneship.search.options import SearchOptions
from tuneship.search.space import Space


@dataclass
class Outcome:
    quality: float
    """The checkpoint's quality less what the published precision lost in the export gate."""
    p99_ms: float
    throughput: float
    size_mb: float
    served_mb: float
    train_peak_mb: float
    precision: str
    """The variant the export published (int8-dynamic, fp32-fused, ...)."""
    checkpoint: str
    model: str
    train_seconds: float
    seconds: float

    def attrs(self) -> dict[str, Any]:
        return asdict(self)


EXPORT_CHOICES = ("precision", "layout")  # what a trial chooses for the exporter rather than the trainer


class TrialFailed(Exception):
    """The trial could not finish (training diverged, the gate refused every variant, a load failed); the search
    records it as failed, with this reason, and goes on."""


class _PeakMemory:
    """This process's largest resident size while the block runs (training runs here; sampled, so close)."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.peak_kb = 0
        self._stop = threading.Event()

    @staticmethod
    def _rss_kb() -> int:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

    def _watch(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak_kb = max(self.peak_kb, self._rss_kb())

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        self.peak_kb = self._rss_kb()
        thread = threading.Thread(target=self._watch, daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()
            self.peak_kb = max(self.peak_kb, self._rss_kb())


def training_values(options: SearchOptions, space: Space, chosen: Mapping[str, Any], output: Path) -> dict[str, Any]:
    """`tuneship train`'s options for a trial: the command line's data options, the space's fixed ones, the
    trial's choice (its model label resolved to what training takes)."""
    values = {**options.training, **space.fixed,
              **{k: v for k, v in chosen.items() if k not in EXPORT_CHOICES}}
    values["model"] = space.models[str(chosen["model"])]
    values.update(output=str(output), overwrite=True)
    return values


def export_options(task: str, checkpoint: Path, name: str, repository: Path, chosen: Mapping[str, Any],
                   **given: Any) -> Any:
    """The task's export options for a trial's choice (its precision and, where the task has several, layout)."""
    from tuneship.tasks import load
    from tuneship.tasks import task as task_row

    options_class = load(task_row(task).export_options)
    options = options_class(checkpoint=checkpoint, name=name, repository=repository,
                            precision=str(chosen.get("precision", "auto")), **given)
    if chosen.get("layout") and hasattr(options, "serving"):
        options.serving.layout = str(chosen["layout"])
    return options


def _gate_drop(report: Any) -> float:
    """Points of quality the published variant lost against fp32 in the gate (0 when not measured)."""
    for variant in getattr(report, "variants", []):
        if variant.get("name") == report.chosen and variant.get("accuracy_drop_points") is not None:
            return max(0.0, float(variant["accuracy_drop_points"]))
    return 0.0


def run_trial(options: SearchOptions, space: Space, chosen: Mapping[str, Any], folder: Path, name: str,
              measure: Measurer, report: Callable[[int, float], bool] | None) -> Outcome:
    """Train, export, measure; TrialFailed says why a trial could not finish (the search goes on), TrialPruned
    comes through from training; a DataError (the data, not the trial) is the caller's to stop on."""
    from tuneship.exporter import export_checkpoint
    from tuneship.repository import RepositoryError
    from tuneship.search.pruning import pruning_callback
    from tuneship.tasks import task as task_row
    from tuneship.trainer import TrainingError, train
    from tuneship.trainer.callbacks import training_callbacks
    from tuneship.trainer.config import config_class, validate_config

    started = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    values = training_values(options, space, chosen, folder / "checkpoint")
    config = config_class(options.task)(**values)
    validate_config(config)
    callbacks = [pruning_callback(report)] if report is not None else []
    memory = _PeakMemory()
    try:
        with memory.watching(), training_callbacks(*callbacks):
            result = train(config)
    except TrainingError as error:
        raise TrialFailed(f"training: {str(error).splitlines()[0]}") from error
    quality = result.metrics.get(space.quality)
    if quality is None:
        raise TrialFailed(f"training wrote no {space.quality} figure (metrics.json)")
    repository = options.output / "repository"
    try:
        exported = export_checkpoint(export_options(options.task, result.checkpoint, name, repository, chosen,
                                                    gate_samples=options.gate_samples, keep=1))
    except RepositoryError as error:  # ExportError is one
        raise TrialFailed(f"export: {str(error).splitlines()[0]}") from error
    models = list(getattr(exported, "versions", {}) or {name: 1})
    try:
        served = measure(name, task_row(options.task))
    except Exception as error:  # a model that does not load or answer is this trial's result
        raise TrialFailed(f"serving: {str(error).splitlines()[0][:200]}") from error
    if served.errors:
        raise TrialFailed(f"serving: {served.errors} requests failed while measuring")
    scale = 100.0 if float(quality) <= 1.0 else 1.0
    return Outcome(
        quality=round(float(quality) - _gate_drop(exported) / scale, 4), p99_ms=served.p99_ms,
        throughput=served.throughput, size_mb=folder_mb([repository / model for model in models]),
        served_mb=served.served_mb, train_peak_mb=round(memory.peak_kb / 1024, 1),
        precision=str(getattr(exported, "chosen", chosen["precision"])), checkpoint=str(result.checkpoint),
        model=name, train_seconds=round(result.train_seconds, 1), seconds=round(time.monotonic() - started, 1))
