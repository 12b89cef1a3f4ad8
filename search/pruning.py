"""Stopping a hopeless trial early: Optuna's median rule, applied by the search itself.

Optuna's pruners take one objective and a study with multiple objectives cannot `report`; so each evaluation a
Trainer runs is recorded on the trial (its `curve`, quality at quarters of its training) and compared with the
median of the finished trials at the same quarter, as MedianPruner compares at the same step. Training is stopped
from a Trainer callback, the trial is recorded as pruned, and the next one starts.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

QUARTERS = 4  # evaluations per trial: at 25, 50, 75 and 100% of its steps


@dataclass(frozen=True)
class MedianRule:
    startup_trials: int = 5
    """Finished trials needed at a quarter before anything is pruned there (Optuna's MedianPruner's default)."""
    last_quarter: int = QUARTERS - 1
    """The last quarter that may prune (the end of training is finished work, kept)."""

    def prune(self, quarter: int, value: float, finished: Sequence[Mapping[int, float]]) -> bool:
        """True when `value` at `quarter` is below the median of the finished trials' values there."""
        if quarter > self.last_quarter:
            return False
        seen = [curve[quarter] for curve in finished if quarter in curve]
        return len(seen) >= self.startup_trials and value < statistics.median(seen)


def intermediate(metrics: Mapping[str, float]) -> float | None:
    """The evaluation figure compared between trials: accuracy where the Trainer computes it, else the loss
    (negated, so higher is better either way)."""
    if "eval_accuracy" in metrics:
        return float(metrics["eval_accuracy"])
    if "eval_loss" in metrics:
        return -float(metrics["eval_loss"])
    return None


def quarter_steps(max_steps: int) -> set[int]:
    return {max(1, round(max_steps * q / QUARTERS)) for q in range(1, QUARTERS + 1)}


class TrialPruned(Exception):
    """Raised through the Trainer to stop a hopeless trial (the search records it as pruned)."""


def pruning_callback(report: Callable[[int, float], bool]) -> Any:
    """A transformers TrainerCallback: it evaluates at each quarter of training and hands `report(quarter,
    value)` each evaluation; `report` returning True stops the trial (TrialPruned)."""
    from transformers import TrainerCallback

    class _Pruning(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            epoch_end = "epoch" in str(getattr(args, "eval_strategy", "")).lower() and state.epoch is not None \
                and abs(state.epoch - round(state.epoch)) < 1e-6  # evaluated there anyway
            if state.global_step in quarter_steps(state.max_steps) and not epoch_end:
                control.should_evaluate = True
            return control

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Mapping[str, float] | None = None,
                        **kwargs: Any) -> Any:
            value = intermediate(metrics or {})
            if value is None or not state.max_steps:
                return control
            quarter = min(QUARTERS, max(1, round(QUARTERS * state.global_step / state.max_steps)))
            if report(quarter, value):
                raise TrialPruned(f"quarter {quarter}: {value:.4f} below the median of finished trials")
            return control

    return _Pruning()
