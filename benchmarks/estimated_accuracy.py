"""Accuracy estimated before labels (BENCHMARKS.md): the estimate the served model's recording rule computes, on
the quality demonstration's shifted traffic (movie reviews, then tweets), window by window against the accuracy
labels would show on the same windows.

    .venv/bin/python benchmarks/estimated_accuracy.py runs/sentiment --out benchmarks/results/estimated_accuracy

The checkpoint's held-out set (eval.jsonl) is split: its first part calibrates, as the export does with its
held-out texts (`tuneship.exporter.quality.bin_accuracy`), and the rest is review traffic it never trained on;
tweets (neutral dropped, positive/negative as fresh/rotten) are the shifted traffic. For each window of
`--window` answers: the estimate (each bin's share of the window's answers times the bin's calibrated accuracy:
`model_version:estimated_accuracy:30m`), the mean top-class probability (the estimate without calibration), and
the accuracy the window's labels give. The answers are the checkpoint's in PyTorch; served answers agree with them
(the export's validation)."""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import machine

LABEL_MAP = {"positive": "fresh", "negative": "rotten"}


def probabilities(checkpoint: Path, texts: list[str], batch: int = 64) -> np.ndarray:
    import torch

    from tuneship.trainer.text.loading import load_classifier

    model, tokenizer, info = load_classifier(checkpoint)
    rows = []
    with torch.no_grad():
        for start in range(0, len(texts), batch):
            encoded = tokenizer(texts[start:start + batch], truncation=True, max_length=info.max_length,
                                padding=True, return_tensors="pt")
            rows.append(torch.softmax(model(**encoded).logits.float(), dim=-1).numpy())
    return np.concatenate(rows)


def main() -> None:
    from tuneship.exporter.quality import bin_accuracy, bin_names, confidence_bins
    from tuneship.trainer import load_builtin
    from tuneship.trainer.checkpoint import read_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--calibration", type=int, default=1000, help="held-out reviews that calibrate")
    parser.add_argument("--window", type=int, default=200, help="answers per window (the alert's minimum)")
    parser.add_argument("--tweets", type=int, default=1600)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/estimated_accuracy"))
    args = parser.parse_args()

    info = read_checkpoint(args.checkpoint)
    labels = info.labels
    held_out = [json.loads(line) for line in (args.checkpoint / "eval.jsonl").read_text().splitlines() if line]
    calibration, reviews = held_out[:args.calibration], held_out[args.calibration:]
    tweets = [(e.text, LABEL_MAP[e.label]) for e in load_builtin("tweets").examples if e.label in LABEL_MAP]
    random.Random(7).shuffle(tweets)
    tweets = tweets[:args.tweets]
    texts = ([r["text"] for r in calibration] + [r["text"] for r in reviews] + [t for t, _ in tweets])
    truth = np.asarray([labels.index(r["label"]) for r in calibration + reviews]
                       + [labels.index(label) for _, label in tweets])
    probs = probabilities(args.checkpoint, texts)
    top, right = probs.max(axis=1), probs.argmax(axis=1) == truth
    n = len(calibration)
    table = bin_accuracy(top[:n], right[:n])
    names = bin_names()
    reference = float(right[:n].mean())

    def window(start: int, stop: int, traffic: str) -> dict[str, Any]:
        bins = confidence_bins(top[start:stop])
        estimate = sum(float((bins == i).mean()) * table[name] for i, name in enumerate(names))
        return {"traffic": traffic, "answers": stop - start, "estimated": round(estimate, 4),
                "mean_confidence": round(float(top[start:stop].mean()), 4),
                "realised": round(float(right[start:stop].mean()), 4)}

    windows = []
    for traffic, first, last in (("reviews", n, n + len(reviews)), ("tweets", n + len(reviews), len(texts))):
        for start in range(first, last - args.window + 1, args.window):
            windows.append(window(start, start + args.window, traffic))
    summary = {}
    for traffic in ("reviews", "tweets"):
        part = [w for w in windows if w["traffic"] == traffic]
        errors = [abs(w["estimated"] - w["realised"]) for w in part]
        naive = [abs(w["mean_confidence"] - w["realised"]) for w in part]
        whole = [w for w in windows if w["traffic"] == traffic]
        summary[traffic] = {
            "windows": len(part), "mean_abs_error_points": round(100 * float(np.mean(errors)), 2),
            "max_abs_error_points": round(100 * float(np.max(errors)), 2),
            "uncalibrated_mean_abs_error_points": round(100 * float(np.mean(naive)), 2),
            "estimated_mean": round(float(np.mean([w["estimated"] for w in whole])), 4),
            "realised_mean": round(float(np.mean([w["realised"] for w in whole])), 4)}
    result = {"machine": machine(), "checkpoint": str(args.checkpoint), "reference_accuracy": round(reference, 4),
              "calibration": table, "window": args.window, "summary": summary, "windows": windows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    plot(windows, reference, args.out.with_suffix(".png"))
    print(json.dumps({k: v for k, v in result.items() if k != "windows"}, indent=1))


def plot(windows: list[dict[str, Any]], reference: float, path: Path) -> None:
    from tuneship.png import save_png

    def figure() -> Any:
        import matplotlib.pyplot as plt

        fig, axis = plt.subplots(figsize=(9, 4.5), dpi=100)
        xs = list(range(len(windows)))
        axis.plot(xs, [w["realised"] for w in windows], "o-", label="realised (the window's labels)")
        axis.plot(xs, [w["estimated"] for w in windows], "s--", label="estimated, no labels (calibrated bins)")
        axis.plot(xs, [w["mean_confidence"] for w in windows], ":", color="tab:gray",
                  label="mean confidence (uncalibrated)")
        axis.axhline(reference, color="tab:green", alpha=0.5, label="reference (calibration set)")
        shift = next((i for i, w in enumerate(windows) if w["traffic"] == "tweets"), None)
        if shift is not None:
            axis.axvline(shift - 0.5, color="tab:red", alpha=0.4, label="traffic shifts to tweets")
        axis.set_xlabel(f"window of {windows[0]['answers']} answers")
        axis.set_ylabel("accuracy")
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
        fig.tight_layout()
        return fig

    save_png(figure, path)


if __name__ == "__main__":
    main()
