"""Training progress people can read: a bar with an ETA on a terminal, plain lines in a log, and one table row
per evaluation (instead of the Trainer's raw dict per logging step, numbers as strings)."""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

from transformers import TrainerCallback

HEADER = f"{'epoch':>6}{'step':>8}{'train loss':>12}{'eval loss':>11}{'eval acc':>10}{'lr':>10}{'elapsed':>9}"


def _seconds(value: float) -> str:
    value = max(0.0, value)
    return f"{value:.0f}s" if value < 90 else f"{value // 60:.0f}m{value % 60:02.0f}s"


class TrainingProgress(TrainerCallback):
    """The Trainer's only progress output (its ProgressCallback and PrinterCallback are removed)."""

    def __init__(self, stream: TextIO | None = None, interactive: bool | None = None, lines: int = 10) -> None:
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.lines = lines  # plain-line updates per run when not on a terminal
        self.bar: Any = None
        self.started = 0.0
        self.first_step = 0
        self.last_loss: float | None = None
        self.last_lr: float | None = None
        self.next_line = 0

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.started = time.monotonic()
        self.first_step = state.global_step
        self.next_line = state.global_step
        if self.interactive:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="training", unit="step",
                            file=self.stream, dynamic_ncols=True)
        self._write(HEADER)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)
            if self.last_loss is not None:
                self.bar.set_postfix(loss=f"{self.last_loss:.4f}", refresh=False)
            return
        if state.global_step < self.next_line and state.global_step < state.max_steps:
            return
        self.next_line = state.global_step + max(1, math.ceil(state.max_steps / self.lines))
        done = state.global_step - self.first_step
        elapsed = time.monotonic() - self.started
        left = (state.max_steps - state.global_step) * elapsed / done if done else float("nan")
        loss = f", loss {self.last_loss:.4f}" if self.last_loss is not None else ""
        self._write(f"step {state.global_step}/{state.max_steps} ({100 * state.global_step / state.max_steps:.0f}%)"
                    f"{loss}, {_seconds(elapsed)} elapsed, ETA {_seconds(left) if done else '?'}")

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        logs = logs or {}
        if "loss" in logs:
            self.last_loss = float(logs["loss"])
        if "learning_rate" in logs:
            self.last_lr = float(logs["learning_rate"])

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None,
                    **kwargs: Any) -> None:
        metrics = metrics or {}

        def number(value: Any, width: int, digits: int = 4) -> str:
            return f"{float(value):>{width}.{digits}f}" if value is not None else f"{'-':>{width}}"

        lr = f"{self.last_lr:>10.2e}" if self.last_lr is not None else f"{'-':>10}"
        self._write(f"{float(state.epoch or 0):>6.2f}{state.global_step:>8}{number(self.last_loss, 12)}"
                    f"{number(metrics.get('eval_loss'), 11)}{number(metrics.get('eval_accuracy'), 10)}{lr}"
                    f"{_seconds(time.monotonic() - self.started):>9}")

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class CountProgress:
    """A long loop over items (greedy answers to held-out prompts): a bar with an ETA on a terminal, a few plain
    `what: done/total, ETA` lines in a log, as training's progress is."""

    def __init__(self, what: str, total: int, stream: TextIO | None = None, interactive: bool | None = None,
                 lines: int = 4) -> None:
        self.what, self.total = what, total
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.every = max(1, math.ceil(total / lines))
        self.next_line = self.every
        self.started = time.monotonic()
        self.bar: Any = None
        if self.interactive and total:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=what, unit="prompt", file=self.stream, dynamic_ncols=True)

    def update(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            return
        if done < self.next_line or done >= self.total:
            return
        self.next_line = done + self.every
        elapsed = time.monotonic() - self.started
        eta = elapsed / done * (self.total - done)
        print(f"   {self.what}: {done}/{self.total}, ETA {_seconds(eta)}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        else:
            elapsed = time.monotonic() - self.started
            print(f"   {self.what}: {self.total}/{self.total} in {_seconds(elapsed)}", file=self.stream, flush=True)
