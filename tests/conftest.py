"""Shared fixtures: tiny models made on the spot, and real servers on free ports."""

from __future__ import annotations

import csv
import os
import random
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

def require_tool(name: str) -> str:
    """Path of a command the test needs; missing fails under CI (scripts/test.sh installs it), else skips."""
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: scripts/test.sh installs the Debian package prometheus")
        pytest.skip(f"{name} not installed (apt-get install prometheus)")
    return found


POSITIVE = ["great", "wonderful", "superb", "moving", "brilliant", "delightful", "charming", "gripping"]
NEGATIVE = ["awful", "dull", "boring", "terrible", "tedious", "bland", "clumsy", "lifeless"]
FILLER = ["the", "film", "story", "acting", "movie", "plot", "was", "really", "quite", "and", "its", "cast"]


def synthetic_reviews(count: int, seed: int) -> list[tuple[str, str]]:
    """Short texts whose label is given by one sentiment word: learnable in seconds by a tiny model."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        label = "positive" if index % 2 == 0 else "negative"
        words = rng.sample(FILLER, rng.randint(3, 8))
        words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label == "positive" else NEGATIVE))
        rows.append((" ".join(words), label))
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT with the bundled MiniLM tokenizer, saved as a local folder."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from tuneship.trainer.base_models import resolve_base_model

    path = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(str(resolve_base_model("minilm")))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def review_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("reviews")
    return (write_csv(folder / "train.csv", synthetic_reviews(400, seed=1)),
            write_csv(folder / "eval.csv", synthetic_reviews(60, seed=2)))


@pytest.fixture(scope="session")
def tiny_repository(tiny_bert: Path, review_files: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository holding the `tiny` sentiment ensemble (fp32), trained in seconds."""
    from tuneship.exporter import ExportOptions, export_checkpoint
    from tuneship.trainer import TrainConfig, train

    folder = tmp_path_factory.mktemp("tiny-repository")
    train(TrainConfig(data=str(review_files[0]), eval_file=str(review_files[1]), model=str(tiny_bert),
                      output=str(folder / "ckpt"), epochs=4, learning_rate=3e-3, warmup_ratio=0.0, batch_size=16,
                      max_length=32, seed=7))
    export_checkpoint(ExportOptions(checkpoint=folder / "ckpt", name="tiny", repository=folder / "repo",
                                    precision="fp32", optimize=False))
    return folder / "repo"
