"""What a tune reports: the table, the advice on the single-model layout, the chart and the saved report."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tuneship.repository import TUNING_PLOT, TUNING_REPORT
from tuneship.tuning.search import Trial, frontier


@dataclass
class TuneReport:
    model: str
    percentile: int
    latency_budget_ms: float
    concurrency: int
    trials: list[Trial]
    chosen: Trial | None
    written: list[str]
    reason: str
    published_variant: str = ""  # the variant chosen by the export (or an earlier tune)
    single_model_layout: Trial | None = None  # the same graph and settings as one model, measured as advice


def single_model_advice(report: TuneReport) -> str:
    """One line comparing the single-model layout with the chosen configuration, or "" when not measured."""
    fused, chosen = report.single_model_layout, report.chosen
    if fused is None or fused.note or not fused.latency_ms or chosen is None or not chosen.texts_per_second:
        return ""
    key = f"p{report.percentile}"
    gain = fused.texts_per_second / chosen.texts_per_second - 1
    return (f"the same graph and settings in the single-model layout (one Python model; `tuneship export --layout "
            f"single`, under a new name) measured {fused.texts_per_second:.0f} texts/s at {key} "
            f"{fused.latency_ms[key]:.1f} ms: {gain:+.0%} texts/s against the chosen configuration "
            f"({chosen.latency_ms[key]:.1f} ms)")


def header() -> str:
    return f"  {'configuration':<52}{'texts/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}  verdict"


def row(trial: Trial, percentile: int, budget_ms: float, chosen: bool = False, label: str = "") -> str:
    name = trial.candidate.describe() + (" (current)" if trial.current else "") + (f" [{label}]" if label else "")
    if trial.note:
        return f"  {name:<52}{trial.note}"
    verdict = "within budget" if trial.within(percentile, budget_ms) else "over budget"
    if trial.errors:
        verdict = f"{trial.errors} errors"
    mark = "*" if chosen else " "
    return (f"{mark} {name:<52}{trial.texts_per_second:>9.1f}{trial.latency_ms['p50']:>9.1f}"
            f"{trial.latency_ms['p95']:>9.1f}{trial.latency_ms['p99']:>9.1f}{trial.errors:>8}  {verdict}")


def plot(report: TuneReport, path: Path) -> None:
    from tuneship.png import save_png

    save_png(lambda: _figure(report), path)


def _figure(report: TuneReport) -> Any:
    import matplotlib.pyplot as plt

    key = f"p{report.percentile}"
    measured = [t for t in report.trials if t.latency_ms and not t.note]
    fig, axis = plt.subplots(figsize=(8, 5), dpi=100)
    axis.scatter([t.texts_per_second for t in measured], [t.latency_ms[key] for t in measured], color="tab:gray",
                 label="configurations measured")
    line = frontier(report.trials, report.percentile)
    axis.plot([t.texts_per_second for t in line], [t.latency_ms[key] for t in line], "o-", color="tab:blue",
              label="frontier (nothing faster at lower latency)")
    axis.axhline(report.latency_budget_ms, color="tab:red", linestyle="--",
                 label=f"budget {report.latency_budget_ms:g} ms")
    for trial in measured:
        if trial.candidate.variant:  # precision variants, named where they sit
            axis.annotate(trial.candidate.variant, (trial.texts_per_second, trial.latency_ms[key]),
                          textcoords="offset points", xytext=(6, 4), fontsize=8, color="tab:purple")
        if trial.current:
            axis.scatter([trial.texts_per_second], [trial.latency_ms[key]], marker="s", s=80, facecolors="none",
                         edgecolors="black", label="current")
    fused = report.single_model_layout
    if fused is not None and fused.latency_ms and not fused.note:
        axis.scatter([fused.texts_per_second], [fused.latency_ms[key]], marker="D", s=70, color="tab:green",
                     zorder=5, label="the chosen settings in the single-model layout (advice)")
    if report.chosen is not None:
        axis.scatter([report.chosen.texts_per_second], [report.chosen.latency_ms[key]], marker="*", s=250,
                     color="tab:orange", zorder=5, label=f"chosen: {report.chosen.candidate.describe()}")
    axis.set_xlabel("texts/s")
    axis.set_ylabel(f"{key} latency (ms)")
    axis.set_title(f"{report.model}: throughput and latency at concurrency {report.concurrency}", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    fig.tight_layout()
    return fig


def save(report: TuneReport, repository: Path) -> tuple[Path, Path]:
    from tuneship.repository import write_text_atomic

    folder = repository / report.model
    data = asdict(report)
    json_path, png_path = folder / TUNING_REPORT, folder / TUNING_PLOT
    write_text_atomic(json_path, json.dumps(data, indent=2) + "\n")
    plot(report, png_path)
    return json_path, png_path
