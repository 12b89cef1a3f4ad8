"""`--fine-tune`: out-of-fold probabilities from the encoder fine-tuned on each fold (one `tuneship train` run per
fold, on the other folds, scoring the held-out one). Linear models on frozen embeddings and on words are right on
about three reviews in four, so most rows they doubt are hard rather than mislabelled; a fine-tuned model is right
more often, and its doubts point at labels. Slower: `--folds` training runs."""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]


def _write(path: Path, texts: Sequence[str], labels: Sequence[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels, strict=True))
    return path


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """A fold's training prints its own tables; the check shows one line per fold instead."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _predict(checkpoint: Path, texts: Sequence[str], classes: list[str], batch: int = 64) -> Array:
    import torch

    from tuneship.trainer.text.loading import load_classifier

    model, tokenizer, info = load_classifier(checkpoint)
    order = [info.labels.index(label) for label in classes]
    rows = []
    with torch.no_grad():
        for start in range(0, len(texts), batch):
            encoded = tokenizer(list(texts[start:start + batch]), truncation=True, max_length=info.max_length,
                                padding=True, return_tensors="pt")
            rows.append(torch.softmax(model(**encoded).logits.float(), dim=-1).numpy()[:, order])
    return np.concatenate(rows)


def fine_tuned_out_of_fold(texts: Sequence[str], label_ids: Array, *, classes: list[str], folds: int, seed: int,
                           encoder: str, max_length: int, epochs: float, work: Path) -> Array:
    from sklearn.model_selection import StratifiedKFold

    from tuneship.trainer import train
    from tuneship.trainer.text.config import TextTrainConfig

    labels = [classes[i] for i in label_ids]
    probabilities = np.zeros((len(texts), len(classes)))
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    try:
        for fold, (kept, held) in enumerate(split.split(np.zeros(len(texts)), label_ids)):
            folder = work / f"fold-{fold}"
            data = _write(folder / "train.csv", [texts[i] for i in kept], [labels[i] for i in kept])
            evaluation = _write(folder / "held.csv", [texts[i] for i in held], [labels[i] for i in held])
            config = TextTrainConfig(data=str(data), eval_file=str(evaluation), model=encoder, method="full",
                                     epochs=epochs, max_length=max_length, seed=seed, output=str(folder / "model"),
                                     overwrite=True)
            print(f"fine-tuning fold {fold + 1}/{folds} on {len(kept)} rows ...", flush=True)
            with _quiet():
                train(config)
            probabilities[held] = _predict(folder / "model", [texts[i] for i in held], classes)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return probabilities
