"""The texts the exporter validates, gates and calibrates on: the checkpoint's own data where it has some."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FALLBACK_TEXTS = [
    "A gripping, beautifully acted film.",
    "Dull, overlong and badly written.",
    "It has its moments, but the ending falls flat.",
    "One of the best movies of the year.",
]


def read_jsonl(path: Path | None, limit: int) -> tuple[list[str], list[str]]:
    if path is None or not path.is_file():
        return [], []
    texts: list[str] = []
    labels: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if len(texts) >= limit:
                break
            record = json.loads(line)
            texts.append(record["text"])
            labels.append(record["label"])
    return texts, labels


def calibration_texts(checkpoint: Any, limit: int) -> list[str]:
    """Training texts for static int8 calibration (falls back to the held-out texts)."""
    from tuneship.trainer import BUILTIN_DATASETS, load_builtin, load_file

    hyper = checkpoint.manifest.get("hyperparameters", {})
    source = str(hyper.get("data", ""))
    try:
        texts: list[str]
        if source in BUILTIN_DATASETS:
            texts = load_builtin(source).texts
        elif source and Path(source).is_file():
            texts = load_file(Path(source), hyper.get("text_column", "text"), hyper.get("label_column", "label"),
                              hyper.get("encoding", "utf-8")).texts
        else:
            texts = []
    except Exception:  # calibration data is best-effort: the eval texts are a fine stand-in
        texts = []
    texts = list(texts)
    if not texts:
        texts, _ = read_jsonl(checkpoint.eval_data, limit)
    step = max(1, len(texts) // max(1, limit))
    return texts[::step][:limit] or list(FALLBACK_TEXTS)
