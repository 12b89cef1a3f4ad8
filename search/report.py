"""What a search shows and leaves: one table row per finished trial, the front (the trials no other feasible trial
beats on both quality and p99), and in --output pareto.json, trials.csv and pareto.png."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneship.search.options import SearchOptions

# Short names for the options in the table (the CSV and JSON keep the full ones).
_SHORT = {"learning_rate": "lr", "epochs": "ep", "batch_size": "bs", "warmup_ratio": "wu", "weight_decay": "wd",
          "lora_rank": "r", "lora_alpha": "alpha", "lora_dropout": "drop", "lora_targets": "targets",
          "num_virtual_tokens": "vt", "max_length": "len", "classifier": "clf", "pooling": "pool",
          "augment": "aug"}
HEADER = (f"{'#':>4} {'state':<9}{'model':<16}{'method':<14}{'export':<7}{'options':<58}{'quality':>8}"
          f"{'p99 ms':>8}{'thru/s':>8}{'MB':>7}")
INTERRUPTED = "interrupted (run again)"
OVER_BUDGET = "not run: the budget was used by other workers"


@dataclass
class Row:
    """A trial as the reports show it."""

    number: int
    state: str
    default: bool
    choice: dict[str, Any]
    outcome: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    constraints: list[float] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.state == "complete" and bool(self.outcome)

    @property
    def feasible(self) -> bool:
        return self.complete and all(value <= 0 for value in self.constraints)

    @property
    def quality(self) -> float:
        return float(self.outcome.get("quality", math.nan))

    @property
    def p99_ms(self) -> float:
        return float(self.outcome.get("p99_ms", math.nan))

    def options_text(self) -> str:
        parts = []
        for name, value in self.choice.items():
            if name in ("model", "method", "precision"):
                continue
            if name == "layout":
                parts.append("single-model" if value == "single" else "ensemble")
                continue
            shown = f"{value:.2g}" if isinstance(value, float) else str(value)
            parts.append(f"{_SHORT.get(name, name)}={shown}")
        return " ".join(parts) if not self.default else "(the defaults)"


def rows_of(trials: Sequence[Any]) -> list[Row]:
    """The study's trials (optuna FrozenTrials) that were meant to run, in order."""
    rows = []
    for trial in trials:
        attrs = trial.user_attrs
        if attrs.get("reason") == OVER_BUDGET or "choice" not in attrs:
            continue
        rows.append(Row(number=trial.number, state=trial.state.name.lower(), default=bool(attrs.get("default")),
                        choice=dict(attrs["choice"]), outcome=dict(attrs.get("outcome", {})),
                        reason=str(attrs.get("reason") or (INTERRUPTED if trial.state.name == "FAIL" else "")),
                        constraints=list(attrs.get("constraints", []))))
    return rows


def front(rows: Sequence[Row]) -> list[Row]:
    """The feasible trials no other feasible trial beats on quality (higher) and p99 (lower) at once, by quality."""
    feasible = [r for r in rows if r.feasible]
    kept = [r for r in feasible if not any(
        o.quality >= r.quality and o.p99_ms <= r.p99_ms and (o.quality > r.quality or o.p99_ms < r.p99_ms)
        for o in feasible)]
    return sorted(kept, key=lambda r: (-r.quality, r.p99_ms))


def closest(rows: Sequence[Row], count: int = 3) -> list[Row]:
    """When no trial is feasible: those that miss the constraints by the least (summed, each relative)."""
    complete = [r for r in rows if r.complete]
    return sorted(complete, key=lambda r: sum(max(0.0, v) for v in r.constraints))[:count]


def constraint_values(options: SearchOptions, outcome: Mapping[str, Any]) -> list[float]:
    """Optuna's constraint values: each at most 0 when met."""
    values = []
    if options.max_p99_ms is not None:
        values.append(float(outcome["p99_ms"]) - options.max_p99_ms)
    if options.max_size_mb is not None:
        values.append(float(outcome["size_mb"]) - options.max_size_mb)
    if options.min_quality is not None:
        values.append(options.min_quality - float(outcome["quality"]))
    return values


def constraints_text(options: SearchOptions) -> str:
    parts = []
    if options.max_p99_ms is not None:
        parts.append(f"p99 <= {options.max_p99_ms:g} ms")
    if options.max_size_mb is not None:
        parts.append(f"size <= {options.max_size_mb:g} MB")
    if options.min_quality is not None:
        parts.append(f"quality >= {options.min_quality:g}")
    return ", ".join(parts) or "none"


def table_row(row: Row, on_front: bool = False) -> str:
    mark = "*" if on_front else " "
    model, method = str(row.choice.get("model", ""))[:15], str(row.choice.get("method", ""))[:13]
    precision = str(row.choice.get("precision", ""))[:6]
    head = f"{row.number:>4}{mark}{row.state:<9}{model:<16}{method:<14}{precision:<7}{row.options_text()[:57]:<58}"
    if not row.complete:
        return head + (row.reason[:100] if row.reason else "")
    o = row.outcome
    return head + f"{o['quality']:>8.4f}{o['p99_ms']:>8.1f}{o['throughput']:>8.1f}{o['size_mb']:>7.1f}"


CSV_FIELDS = ("number", "state", "default", "feasible", "on_front", "model", "method", "precision", "layout",
              "published",
              "options", "quality", "p99_ms", "throughput", "size_mb", "served_mb", "train_peak_mb", "train_seconds",
              "seconds", "checkpoint", "reason")


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write_results(options: SearchOptions, rows: Sequence[Row], quality_name: str) -> None:
    """trials.csv and pareto.json, each written aside and renamed (a reader never sees half of one)."""
    kept = front(rows)
    on_front = {r.number for r in kept}
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS)
    writer.writeheader()
    for row in rows:
        o = row.outcome
        options_only = {k: v for k, v in row.choice.items() if k not in ("model", "method", "precision", "layout")}
        writer.writerow({
            "number": row.number, "state": row.state, "default": row.default, "feasible": row.feasible,
            "on_front": row.number in on_front, "model": row.choice.get("model"), "method": row.choice.get("method"),
            "precision": row.choice.get("precision"), "layout": row.choice.get("layout", ""),
            "published": o.get("precision", ""),
            "options": json.dumps(options_only, sort_keys=True), **{k: o.get(k, "") for k in (
                "quality", "p99_ms", "throughput", "size_mb", "served_mb", "train_peak_mb", "train_seconds",
                "seconds", "checkpoint")}, "reason": row.reason})
    _write_atomic(options.output / "trials.csv", buffer.getvalue())
    default = next((r for r in rows if r.default and r.complete), None)
    payload = {
        "task": options.task, "quality": quality_name, "constraints": constraints_text(options),
        "trials": {state: sum(r.state == state for r in rows) for state in ("complete", "pruned", "fail")},
        "front": [_entry(r) for r in kept], "default": _entry(default) if default else None,
        "best": _entry(kept[0]) if kept else None,
        "closest": [] if kept else [_entry(r) for r in closest(rows)],
    }
    _write_atomic(options.output / "pareto.json", json.dumps(payload, indent=2) + "\n")


def _entry(row: Row) -> dict[str, Any]:
    return {"number": row.number, "default": row.default, "choice": row.choice, "metrics": row.outcome,
            "feasible": row.feasible}


def plot(options: SearchOptions, rows: Sequence[Row], quality_name: str) -> Path | None:
    """pareto.png: every finished trial's quality against its p99, the front drawn, the defaults marked."""
    from tuneship.png import save_png

    complete = [r for r in rows if r.complete]
    if not complete:
        return None
    kept = front(rows)

    def figure() -> Any:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(figsize=(7.5, 4.8))
        feasible = [r for r in complete if r.feasible]
        infeasible = [r for r in complete if not r.feasible]
        axes.scatter([r.p99_ms for r in feasible], [r.quality for r in feasible], color="tab:blue", alpha=0.6,
                     label="trials")
        if infeasible:
            axes.scatter([r.p99_ms for r in infeasible], [r.quality for r in infeasible], marker="x",
                         color="tab:gray", label="outside the constraints")
        line = sorted(kept, key=lambda r: r.p99_ms)
        axes.step([r.p99_ms for r in line], [r.quality for r in line], where="post", color="tab:red",
                  marker="o", label="front")
        for r in line:
            axes.annotate(f"#{r.number} {r.choice.get('method')}", (r.p99_ms, r.quality), fontsize=7,
                          xytext=(4, -10), textcoords="offset points")
        default = next((r for r in complete if r.default), None)
        if default is not None:
            axes.scatter([default.p99_ms], [default.quality], marker="*", s=220, color="tab:orange",
                         edgecolor="black", zorder=5, label="default configuration")
        if options.max_p99_ms is not None:
            axes.axvline(options.max_p99_ms, color="tab:red", linestyle=":", linewidth=0.8)
        axes.set_xlabel("served p99 at batch 1 (ms)")
        axes.set_ylabel(quality_name)
        axes.set_title(f"tuneship search: {options.task}, {len(complete)} finished trials")
        axes.legend(fontsize=8)
        fig.tight_layout()
        return fig

    target = options.output / "pareto.png"
    temporary = options.output / f".pareto.{os.getpid()}.png"
    if not save_png(figure, temporary):
        return None
    os.replace(temporary, target)
    return target
