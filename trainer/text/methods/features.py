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

from tuneship.trainer.linear_head import FloatArray, LinearHead, fit_linear_head
from tuneship.trainer.linear_head import cache_directory as cache_directory
from tuneship.trainer.linear_head import plot_search as plot_search

HEAD_FILE = "classifier.safetensors"


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


