"""Training-curve PNG from the Trainer's log history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneship.png import save_png


def plot_training_curve(log_history: list[dict[str, Any]], path: Path, title: str = "training curve",
                        metric: str = "eval_accuracy") -> None:
    save_png(lambda: _curve(log_history, title, metric), path)


def _curve(log_history: list[dict[str, Any]], title: str, metric: str) -> Any:
    import matplotlib.pyplot as plt

    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    evals = [(e["step"], e[metric]) for e in log_history if metric in e and "step" in e]
    eval_loss = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e and "step" in e]
    fig, loss_axis = plt.subplots(figsize=(8, 4.5), dpi=100)
    if train:
        loss_axis.plot(*zip(*train, strict=True), "-" if len(train) > 12 else ".-", label="training loss",
                       color="tab:blue")
    if eval_loss:
        loss_axis.plot(*zip(*eval_loss, strict=True), "o--", label="eval loss", color="tab:cyan")
    loss_axis.set_xlabel("optimizer step")
    loss_axis.set_ylabel("loss")
    handles, names = loss_axis.get_legend_handles_labels()
    if evals:
        metric_axis = loss_axis.twinx()
        metric_axis.plot(*zip(*evals, strict=True), "s-", label=metric.replace("_", " "), color="tab:orange")
        metric_axis.set_ylabel(metric.replace("eval_", "eval "))
        more_handles, more_names = metric_axis.get_legend_handles_labels()
        handles, names = handles + more_handles, names + more_names
    # Below the axes, never over the lines.
    loss_axis.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=len(names), frameon=False)
    loss_axis.set_title(title, fontsize=10)
    loss_axis.grid(alpha=0.3)
    fig.tight_layout()
    return fig
