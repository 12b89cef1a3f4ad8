"""What every task's training run shares (trl keeps these on its base Trainer, not in one method's file): the work
folder a resumable run checkpoints into, the precision flags, the evaluation epilogue of a classifier, the
checkpoint written aside and renamed into place, and warnings shown the same way by every task."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneship.trainer.checkpoint import make_staging_directory, publish_directory
from tuneship.trainer.config import TrainConfig, save_json
from tuneship.trainer.distributed import from_main, is_main_process
from tuneship.trainer.errors import TrainingError

RUN_CONFIG = "tuneship-run.json"  # the options of the run in the work folder, compared on --resume


def work_dir(output: Path) -> Path:
    """Where a run keeps its Trainer checkpoints for --resume: beside the output, hidden."""
    return output.with_name(f".{output.name}.work")


def precision_flags(precision: str) -> dict[str, bool]:
    """The Trainer's bf16/fp16 flags for --precision; a half precision without a GPU is refused."""
    import torch

    cuda = torch.cuda.is_available()
    if precision == "auto":
        precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    if precision in ("bf16", "fp16") and not cuda:
        raise TrainingError(f"--precision {precision} needs a GPU; use fp32 (or auto) on a CPU")
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


@contextlib.contextmanager
def library_bars_only_on_a_terminal() -> Iterator[None]:
    """The libraries' own progress bars (transformers loading weights, datasets mapping trl's data) redraw with
    carriage returns: on a terminal a bar, in a log a line of kilobytes per bar. Off unless stderr is a terminal,
    as tuneship's own progress is."""
    if sys.stderr.isatty():
        yield
        return
    from transformers.utils import logging as transformers_logging

    try:
        import datasets
    except ImportError:  # only the instruct task (trl) needs it
        datasets = None
    transformers_was = transformers_logging.is_progress_bar_enabled()
    datasets_was = datasets is not None and datasets.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    if datasets is not None:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if transformers_was:
            transformers_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
        if datasets_was and datasets is not None:
            datasets.enable_progress_bars()


def single_class_warning(predicted: list[int], labels: list[str]) -> str:
    """A warning when the classifier predicts one class for the whole eval set (it learned nothing useful)."""
    if len(predicted) < 2 or len(set(predicted)) > 1:
        return ""
    return (f"the model predicts {labels[predicted[0]]!r} for all {len(predicted)} eval texts: it has not learned "
            "to tell the classes apart. Check the labels, train longer (--epochs), or change --learning-rate.")


def classifier_metrics(true_ids: Sequence[int], predicted: list[int], labels: list[str], seconds: float,
                       per_second: float, steps: int) -> tuple[dict[str, Any], str]:
    """(metrics.json's content, the single-class warning or "") of a classifier's evaluation."""
    from tuneship.trainer.evaluation import classification_metrics

    metrics = classification_metrics(list(true_ids), predicted, labels)
    collapsed = single_class_warning(predicted, labels)
    if collapsed:
        metrics["warnings"] = [collapsed]
    metrics.update({"train_seconds": round(seconds, 1), "train_examples_per_second": round(per_second, 1),
                    "steps": steps})
    return metrics, collapsed


def write_checkpoint(output: Path, fill: Callable[[Path], None], work: Path | None = None) -> None:
    """Write the checkpoint into a staging folder beside `output` with `fill`, then rename it into place (readers
    never see half of it); the run's work folder goes once the checkpoint is there."""
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = make_staging_directory(output.parent, f".{output.name}.tmp-")
    try:
        fill(staging)
        publish_directory(staging, output, overwrite=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if work is not None:
        shutil.rmtree(work, ignore_errors=True)


def warn(message: str) -> None:
    """A warning a person must not miss at the end of a run: a banner on stderr, the same for every task."""
    banner = "!" * 100
    print(f"\n{banner}\nWARNING: {message}\n{banner}\n", file=sys.stderr, flush=True)


def last_complete_checkpoint(work: Path) -> Path | None:
    """The newest Trainer checkpoint that was fully written (a SIGKILL can leave a partial one behind)."""
    candidates = []
    for path in work.glob("checkpoint-*"):
        suffix = path.name.rsplit("-", 1)[-1]
        if suffix.isdigit() and (path / "trainer_state.json").is_file() and (path / "optimizer.pt").is_file():
            candidates.append((int(suffix), path))
    return max(candidates)[1] if candidates else None


def _check_resumable(work: Path, config: TrainConfig) -> None:
    saved = work / RUN_CONFIG
    if not saved.is_file():
        return
    earlier = json.loads(saved.read_text(encoding="utf-8"))
    for key in ("method", "model", "data", "eval_file", "max_length", "seed", "max_train_samples"):
        now = getattr(config, key, None)
        if earlier.get(key) != now:
            raise TrainingError(
                f"--resume: the interrupted run used {key}={earlier.get(key)!r}, this one {now!r}; "
                f"resume with the same options, or start afresh without --resume (removes {work})")


def prepare_work_dir(work: Path, config: TrainConfig) -> str | None:
    """The Trainer's checkpoint folder: kept with --resume (the checkpoint to resume from is returned), else new.
    Under a launcher rank 0 prepares it and every rank resumes from the checkpoint rank 0 chose."""
    return from_main(_prepare_work_dir(work, config) if is_main_process() else None)


def _prepare_work_dir(work: Path, config: TrainConfig) -> str | None:
    resume_from = None
    if config.resume:
        _check_resumable(work, config)
        found = last_complete_checkpoint(work) if work.is_dir() else None
        resume_from = str(found) if found else None
        print(f"resuming from {resume_from}" if resume_from else "no earlier checkpoint found: starting afresh")
    elif work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    save_json(work / RUN_CONFIG, config.to_dict())
    return resume_from


@dataclass
class TrainResult:
    checkpoint: Path
    metrics: dict[str, Any]
    train_seconds: float


def resolved_logging_steps(config: TrainConfig, total_steps: int) -> int:
    """The loss is logged often enough for a curve: every --logging-steps, or ~50 points over a short run."""
    if config.logging_steps is not None:
        return config.logging_steps
    return max(1, min(20, total_steps // 50))


def check_output(output: Path, overwrite: bool) -> None:
    """Refuse an --output that cannot take a checkpoint, before any data or model is loaded."""
    if output.exists() and not output.is_dir():
        raise TrainingError(f"--output {output} is a file, not a checkpoint directory; choose another --output")
    if output.exists() and not overwrite:
        raise TrainingError(f"{output} already exists; pass --overwrite to replace it or choose another --output")
    parent = output.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise TrainingError(f"--output {output}: {parent} is a file, so no directory can be made under it")
    if not os.access(parent, os.W_OK):
        raise TrainingError(f"--output {output}: {parent} is not writable")
