"""Feature-based transfer learning: a frozen encoder's pooled features, extracted once (cached), and a
scikit-learn linear classifier on them.

The checkpoint holds the encoder (Hugging Face files at its root) and the linear head in
`classifier.safetensors`; `trainer.load_classifier` puts them together as one torch module, which is
what the exporter exports.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

HEAD_FILE = "classifier.safetensors"
FloatArray = npt.NDArray[np.float32]


def pool(hidden: Any, attention_mask: Any, pooling: str) -> Any:
    """One vector per text: the mean of its real tokens, or the first ([CLS]) token."""
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def _cache_key(base: Path, texts: Sequence[str], max_length: int, pooling: str) -> str:
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors", "pytorch_model.bin"):
        path = base / name
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    digest.update(f"{max_length}:{pooling}".encode())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\x1e")
    return digest.hexdigest()[:32]


def extract_features(encoder: Any, tokenizer: Any, texts: Sequence[str], max_length: int, pooling: str,
                     batch_size: int, description: str) -> FloatArray:
    import torch
    from tqdm.auto import tqdm

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    features = np.zeros((len(texts), encoder.config.hidden_size), dtype=np.float32)
    encoder.eval()
    with torch.inference_mode(), tqdm(total=len(texts), desc=description, unit="text") as bar:
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in index], truncation=True, max_length=max_length, padding=True,
                              return_tensors="pt")
            hidden = encoder(**batch).last_hidden_state
            features[index] = pool(hidden, batch["attention_mask"], pooling).float().numpy()
            bar.update(len(index))
    return features


def cache_directory(config: Any) -> Path:
    return Path(config.feature_cache or Path.home() / ".cache" / "tuneship" / "features")


def cached_features(base: Path, encoder: Any, tokenizer: Any, texts: Sequence[str], config: Any,
                    description: str) -> tuple[FloatArray, bool]:
    cache_dir = cache_directory(config)
    path = cache_dir / f"{_cache_key(base, texts, config.max_length, config.pooling)}.npy"
    if path.is_file():
        return np.load(path), True
    features = extract_features(encoder, tokenizer, texts, config.max_length, config.pooling,
                                config.eval_batch_size, description)
    cache_dir.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(temporary, features)
    os.replace(temporary, path)
    return features, False


@dataclass
class LinearHead:
    """logits = features @ weight.T + bias, with the scaler folded in."""

    weight: FloatArray  # [num_labels, hidden]
    bias: FloatArray  # [num_labels]
    search: list[dict[str, float]]  # cross-validated accuracy for each C tried
    best_c: float


def fit_linear_head(features: FloatArray, label_ids: Sequence[int], num_labels: int, classifier: str,
                    seed: int) -> LinearHead:
    """Standardise, pick C by 3-fold cross-validation, fit; fold the standardisation into the weights."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import LinearSVC

    mean = features.mean(axis=0)
    std = features.std(axis=0) + 1e-6
    scaled = (features - mean) / std
    if classifier == "svm":
        estimator: Any = LinearSVC(random_state=seed, max_iter=5000)
    else:
        estimator = LogisticRegression(max_iter=2000, random_state=seed)
    grid = GridSearchCV(estimator, {"C": [0.001, 0.01, 0.1, 1.0]}, cv=3, scoring="accuracy", n_jobs=1)
    grid.fit(scaled, np.asarray(label_ids))
    best = grid.best_estimator_
    coef = np.asarray(best.coef_, dtype=np.float64)
    intercept = np.asarray(best.intercept_, dtype=np.float64)
    if num_labels == 2 and coef.shape[0] == 1:
        # Binary scikit-learn models score class 1 only: logits [0, s] give the same softmax as sigmoid(s).
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    weight = coef / std
    bias = intercept - (coef * (mean / std)).sum(axis=1)
    search = [{"C": float(c), "cv_accuracy": float(s)}
              for c, s in zip(grid.cv_results_["param_C"], grid.cv_results_["mean_test_score"], strict=True)]
    return LinearHead(weight=weight.astype(np.float32), bias=bias.astype(np.float32), search=search,
                      best_c=float(grid.best_params_["C"]))


def build_classifier_module(encoder: Any, weight: Any, bias: Any, pooling: str) -> Any:
    """Encoder + pooling + linear head as one torch module returning `.logits`, as exported."""
    import torch
    from transformers.modeling_outputs import SequenceClassifierOutput

    class PooledLinearClassifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.config = encoder.config
            self.classifier = torch.nn.Linear(weight.shape[1], weight.shape[0])
            with torch.no_grad():
                self.classifier.weight.copy_(torch.as_tensor(weight))
                self.classifier.bias.copy_(torch.as_tensor(bias))

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            hidden = self.encoder(**kwargs).last_hidden_state
            return SequenceClassifierOutput(logits=self.classifier(pool(hidden, attention_mask, pooling)))

    return PooledLinearClassifier().eval()


@dataclass
class FeatureFit:
    module: Any
    head: LinearHead
    seconds: float
    cache_hits: int
    examples_per_second: float


def fit(base: Path, tokenizer: Any, labels: Sequence[str], train_texts: Sequence[str], train_label_ids: Sequence[int],
        config: Any) -> FeatureFit:
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(str(base)).eval()
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    started = time.monotonic()
    features, hit = cached_features(base, encoder, tokenizer, train_texts, config, "extracting features")
    print(f"features for {len(train_texts)} training texts {'read from cache' if hit else 'extracted'}")
    head = fit_linear_head(features, train_label_ids, len(labels), config.classifier, config.seed)
    seconds = time.monotonic() - started
    module = build_classifier_module(encoder, head.weight, head.bias, config.pooling)
    module.config.id2label = dict(enumerate(labels))
    module.config.label2id = {label: i for i, label in enumerate(labels)}
    module.config.num_labels = len(labels)
    return FeatureFit(module=module, head=head, seconds=seconds, cache_hits=int(hit),
                      examples_per_second=len(train_texts) / max(seconds, 1e-9))


def save(module: Any, directory: Path) -> dict[str, Any]:
    from safetensors.torch import save_file

    module.encoder.config.id2label = module.config.id2label
    module.encoder.config.label2id = module.config.label2id
    module.encoder.save_pretrained(str(directory), safe_serialization=True)
    save_file({"weight": module.classifier.weight.detach().contiguous(),
               "bias": module.classifier.bias.detach().contiguous()}, str(directory / HEAD_FILE))
    total = sum(p.numel() for p in module.parameters())
    return {"adapter": None, "merged": True, "head": HEAD_FILE, "trainable_parameters":
            int(module.classifier.weight.numel() + module.classifier.bias.numel()), "total_parameters": int(total)}


def plot_search(search: list[dict[str, float]], path: Path, classifier: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(7, 4), dpi=100)
    axis.semilogx([s["C"] for s in search], [s["cv_accuracy"] for s in search], "o-")
    axis.set_xlabel("C (inverse regularisation strength)")
    axis.set_ylabel("3-fold cross-validated accuracy")
    axis.set_title(f"features + {classifier}: choosing C")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
