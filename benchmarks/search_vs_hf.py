"""Issue 36's comparison: `tuneship search` against `Trainer.hyperparameter_search` (Optuna backend) on the same
budget, the same data and one method's space (full fine-tuning of MiniLM) (BENCHMARKS.md).

    .venv/bin/python benchmarks/search_vs_hf.py [--trials 8] [--train 1500] [--eval 500]

Both draw learning rate (log), epochs, batch size, warm-up and weight decay from the same ranges (tuneship's
full-fine-tuning space), evaluate at each quarter of training and prune by the median rule (Optuna's MedianPruner
for the Trainer, with its defaults; tuneship's own rule, same defaults). The data is what `tuneship train` takes
with the same options (one seeded split). Reported: the best accuracy, the wall time in pruned trials and in all
trials. tuneship's trials also export through the gate and are measured served; the Trainer's only train.
Writes benchmarks/results/search_vs_hf.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine

RESULTS = Path(__file__).resolve().parent / "results"


def durations(storage: str, name: str) -> dict[str, Any]:
    import optuna

    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)

    def seconds(trial: Any) -> float:
        if trial.datetime_start is None or trial.datetime_complete is None:
            return 0.0
        return float((trial.datetime_complete - trial.datetime_start).total_seconds())

    states = [t.state.name.lower() for t in trials]
    return {"trials": {s: states.count(s) for s in sorted(set(states))},
            "seconds_in_pruned": round(sum(seconds(t) for t in trials if t.state.name == "PRUNED"), 1),
            "seconds_in_all": round(sum(seconds(t) for t in trials), 1)}


def run_transformers(trials: int, train: int, evaluation: int, folder: Path) -> dict[str, Any]:
    import numpy as np
    import optuna
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from tuneship.trainer.config import validate_config
    from tuneship.trainer.text.base_models import resolve_base_model
    from tuneship.trainer.text.config import TextTrainConfig
    from tuneship.trainer.text.search_space import SPACE
    from tuneship.trainer.text.training import prepare_data

    config = TextTrainConfig(data="rotten-tomatoes", max_train_samples=train, max_eval_samples=evaluation)
    validate_config(config)
    prepared = prepare_data(config)
    base = str(resolve_base_model("minilm"))
    tokenizer = AutoTokenizer.from_pretrained(base)
    index = {label: i for i, label in enumerate(prepared.labels)}

    def encode(data: Any) -> list[dict[str, Any]]:
        encoded = tokenizer(data.texts, truncation=True, max_length=128)
        return [{"input_ids": ids, "attention_mask": mask, "labels": index[label]}
                for ids, mask, label in zip(encoded["input_ids"], encoded["attention_mask"], data.labels,
                                            strict=True)]

    space = SPACE.methods["full"]

    def hp_space(trial: Any) -> dict[str, Any]:
        lr, epochs, batch = space["learning_rate"], space["epochs"], space["batch_size"]
        warmup, decay = space["warmup_ratio"], space["weight_decay"]
        return {"learning_rate": trial.suggest_float("learning_rate", lr.low, lr.high, log=True),  # type: ignore
                "num_train_epochs": trial.suggest_int("num_train_epochs", epochs.low, epochs.high),  # type: ignore
                "per_device_train_batch_size": trial.suggest_categorical("batch_size",
                                                                         list(batch.options)),  # type: ignore
                "warmup_ratio": trial.suggest_float("warmup_ratio", warmup.low, warmup.high),  # type: ignore
                "weight_decay": trial.suggest_float("weight_decay", decay.low, decay.high)}  # type: ignore

    def accuracy(prediction: Any) -> dict[str, float]:
        return {"accuracy": float((np.argmax(prediction.predictions, -1) == prediction.label_ids).mean())}

    args = TrainingArguments(output_dir=str(folder / "hf"), eval_strategy="steps", eval_steps=0.25,
                             save_strategy="no", report_to=[], disable_tqdm=True, use_cpu=True, seed=42,
                             per_device_eval_batch_size=64, logging_steps=50)
    trainer = Trainer(model_init=lambda _trial=None: AutoModelForSequenceClassification.from_pretrained(
                          base, num_labels=len(prepared.labels)),
                      args=args, train_dataset=encode(prepared.train), eval_dataset=encode(prepared.evaluation),
                      data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=accuracy)
    storage = f"sqlite:///{folder / 'hf.db'}"
    started = time.monotonic()
    best = trainer.hyperparameter_search(
        direction="maximize", backend="optuna", hp_space=hp_space, n_trials=trials,
        compute_objective=lambda metrics: metrics["eval_accuracy"], study_name="hf", storage=storage,
        pruner=optuna.pruners.MedianPruner(), sampler=optuna.samplers.TPESampler(seed=42))
    return {"best_accuracy": round(float(best.objective), 4), "best": best.hyperparameters,
            "wall_seconds": round(time.monotonic() - started, 1), **durations(storage, "hf")}


def run_tuneship(trials: int, train: int, evaluation: int, folder: Path) -> dict[str, Any]:
    output = folder / "tuneship"
    started = time.monotonic()
    subprocess.run([str(Path(sys.executable).with_name("tuneship")), "search", "--data", "rotten-tomatoes",
                    "--max-train-samples", str(train), "--max-eval-samples", str(evaluation), "--method", "full",
                    "--trials", str(trials), "--output", str(output)], check=True)
    pareto = json.loads((output / "pareto.json").read_text())
    import csv

    with (output / "trials.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    best = max((float(r["quality"]) for r in rows if r["quality"]), default=float("nan"))
    return {"best_accuracy": round(best, 4), "front": [e["number"] for e in pareto["front"]],
            "wall_seconds": round(time.monotonic() - started, 1),
            **durations(f"sqlite:///{(output / 'study.db').resolve()}", "tuneship-search")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--train", type=int, default=1500)
    parser.add_argument("--eval", type=int, default=500)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="search-vs-hf-"))
    summary = {"machine": machine(), "trials": args.trials, "train": args.train, "eval": args.eval,
               "transformers": run_transformers(args.trials, args.train, args.eval, folder),
               "tuneship": run_tuneship(args.trials, args.train, args.eval, folder)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "search_vs_hf.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
