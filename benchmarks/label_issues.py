"""Issue 37's label-issue goal for `tuneship data check` (BENCHMARKS.md).

    .venv/bin/python benchmarks/label_issues.py [--rows 3000] [--flip 0.05]

Takes `--rows` rotten-tomatoes reviews (seeded, stratified), flips `--flip` of their labels at random (seeded),
runs the check as `tuneship data check` does, and scores the flagged set against the flips: precision, recall,
and the precision-recall curve of the label-quality ranking (PNG). The baseline, measured in the same run on the
same file: out-of-fold MiniLM mean-pooled features with logistic regression alone, ranked by the given label's
probability, flagging as many rows as there are flips. Then trains the features method (MiniLM + logistic
regression, the cheapest trainer) on the flipped file, on the --fix copy and on the original labels, and scores
each on the same untouched evaluation rows. Writes benchmarks/results/label_issues.{json,png}.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine

RESULTS = Path(__file__).resolve().parent / "results"


def write(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def train_and_score(train: Path, evaluation: Path, output: Path) -> float:
    from tuneship.trainer import TextTrainConfig
    from tuneship.trainer import train as run_training

    result = run_training(TextTrainConfig(data=str(train), eval_file=str(evaluation), method="features",
                                          output=str(output), overwrite=True))
    return float(result.metrics["accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--eval-rows", type=int, default=1000)
    parser.add_argument("--flip", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--fine-tune", action="store_true",
                        help="the check's --fine-tune: the encoder fine-tuned on each fold, blended in")
    args = parser.parse_args()

    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import precision_recall_curve
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from tuneship.datacheck.check import check
    from tuneship.datacheck.embeddings import embed
    from tuneship.datacheck.fix import cleaned_path, write_clean
    from tuneship.datacheck.options import CheckOptions
    from tuneship.trainer.builtin_data import load_builtin

    examples = load_builtin("rotten-tomatoes").examples
    rng = random.Random(args.seed)
    rng.shuffle(examples)
    train_rows = [(e.text, e.label) for e in examples[:args.rows]]
    eval_rows = [(e.text, e.label) for e in examples[args.rows:args.rows + args.eval_rows]]
    labels = sorted({label for _, label in train_rows})
    flipped = set(rng.sample(range(len(train_rows)), round(args.flip * len(train_rows))))
    noisy = [(text, rng.choice([other for other in labels if other != label]) if i in flipped else label)
             for i, (text, label) in enumerate(train_rows)]
    folder = Path(tempfile.mkdtemp(prefix="label-issues-"))
    noisy_file = write(folder / "noisy.csv", noisy)
    clean_file = write(folder / "original.csv", train_rows)
    eval_file = write(folder / "eval.csv", eval_rows)
    flipped_lines = {i + 2 for i in flipped}

    options = CheckOptions(output=folder / "check", training={"data": str(noisy_file)}, fine_tune=args.fine_tune)
    report = check(options)
    issues = [f for f in report.findings if f.kind == "label_issue"]
    found = {f.line for f in issues}
    precision = len(found & flipped_lines) / max(1, len(found))
    recall = len(found & flipped_lines) / len(flipped_lines)

    # The baseline: MiniLM features + logistic regression alone, out of fold, ranked by the given label's share.
    vectors = embed([t for t, _ in noisy], "minilm", 128)
    ids = np.asarray([labels.index(label) for _, label in noisy])
    probabilities = cross_val_predict(make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)), vectors,
                                      ids, cv=StratifiedKFold(5, shuffle=True, random_state=args.seed),
                                      method="predict_proba")
    given = probabilities[np.arange(len(ids)), ids]
    ranked = np.argsort(given)[:len(flipped)]
    baseline_hits = len({int(i) for i in ranked} & flipped)
    truth = np.asarray([1 if i in flipped else 0 for i in range(len(noisy))])

    # The check's ranking over every row (label quality; rows left out as repeats rank last).
    quality = {f"{noisy_file}:{i + 2}": report.label_quality.get(f"{noisy_file}:{i + 2}", 1.0)
               for i in range(len(noisy))}
    ours_p, ours_r, _ = precision_recall_curve(truth, -np.asarray(list(quality.values())))
    base_p, base_r, _ = precision_recall_curve(truth, -given)

    cut = sorted(quality, key=quality.__getitem__)[:len(flipped)]  # the check's ranking, as many as there are flips
    cut_hits = len({int(where.rsplit(":", 1)[1]) for where in cut} & flipped_lines)
    copy = write_clean(str(noisy_file), cleaned_path(str(noisy_file), folder), "text", "label", "utf-8",
                       report.findings, False, None)
    cleaned, dropped = copy.path, len(copy.dropped)
    accuracy = {
        "flipped labels": train_and_score(noisy_file, eval_file, folder / "ckpt-noisy"),
        "--fix copy": train_and_score(cleaned, eval_file, folder / "ckpt-clean"),
        "original labels": train_and_score(clean_file, eval_file, folder / "ckpt-original"),
    }
    summary: dict[str, Any] = {
        "machine": machine(),
        "rows": len(noisy), "flipped": len(flipped), "flagged": len(found),
        "precision": round(precision, 3), "recall": round(recall, 3),
        "out_of_fold_accuracy": round(report.out_of_fold_accuracy, 3),
        "fine_tune": args.fine_tune,
        "ranking_cut_at_flips": {"flagged": len(flipped), "precision": round(cut_hits / len(flipped), 3),
                                 "recall": round(cut_hits / len(flipped), 3)},
        "baseline_minilm_logreg": {"flagged": len(flipped), "precision": round(baseline_hits / len(flipped), 3),
                                   "recall": round(baseline_hits / len(flipped), 3)},
        "fix_dropped_rows": dropped,
        "features_method_accuracy_on_untouched_eval": {k: round(v, 4) for k, v in accuracy.items()},
    }
    RESULTS.mkdir(exist_ok=True)
    name = f"label_issues{'_finetuned' if args.fine_tune else ''}"
    (RESULTS / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(figsize=(6, 4.5))
    axes.plot(ours_r, ours_p, label="tuneship data check (blended, cleanlab)")
    axes.plot(base_r, base_p, label="MiniLM features + logistic regression alone", linestyle="--")
    axes.scatter([recall], [precision], color="tab:red", zorder=5, label="the flagged set")
    axes.axhline(0.45, color="gray", linewidth=0.6, linestyle=":")
    axes.axvline(0.45, color="gray", linewidth=0.6, linestyle=":")
    axes.set_xlabel("recall of the flipped labels")
    axes.set_ylabel("precision")
    axes.set_title(f"{len(flipped)} of {len(noisy)} rotten-tomatoes labels flipped")
    axes.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=110)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
