"""A published classifier version, answered in this process from its repository files.

The update gate scores the serving version and the candidate on the same texts with the files Triton serves
(the tokenizer's tokenizer.json and config, the model's ONNX graph, the postprocess labels; in the single-model
layout all of them in the one model's version), so the comparison
is of what callers get, without a server.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tuneship.repository import LABELS_FILE, existing_versions


class ScoringError(ValueError):
    """The version cannot be scored here; the message says which file and why."""


class PublishedClassifier:
    def __init__(self, repository: Path, name: str, version: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        from tuneship.repository import Pipeline

        pipeline = Pipeline(repository, name)
        fused = pipeline.single_model
        model_dir = repository / pipeline.graph_model
        versions = existing_versions(model_dir) if model_dir.is_dir() else []
        if not versions:
            raise ScoringError(f"{model_dir}: no published versions of {name!r}")
        self.version = version if version is not None else versions[-1]
        if self.version not in versions:
            raise ScoringError(f"{model_dir}: no version {self.version} (versions: {versions})")
        graph = model_dir / str(self.version) / "model.onnx"
        if not graph.is_file():
            raise ScoringError(f"{graph.parent}: no model.onnx (a TensorRT engine is scored on its GPU server)")
        # The single-model layout keeps the tokenizer and the labels in the model's own version folder and config.
        tokenizer_dir = repository / pipeline.step("tokenizer")
        tokenizer_version = self.version if fused else self._matching(tokenizer_dir)
        parameters = {k: v.string_value for k, v in pipeline.config(pipeline.step("tokenizer")).parameters.items()}
        self.tokenizer = Tokenizer.from_file(str(tokenizer_dir / str(tokenizer_version) / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=int(parameters.get("max_length", "512")))
        self.tokenizer.enable_padding(pad_id=int(parameters.get("pad_token_id", "0")),
                                      pad_token=parameters.get("pad_token", "[PAD]"))
        post_dir = repository / pipeline.step("postprocess")
        labels_file = post_dir / str(self.version if fused else self._matching(post_dir)) / LABELS_FILE
        self.labels = [line for line in labels_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def _matching(self, model_dir: Path) -> int:
        """The composing model's version published with this one (the same number), else its latest."""
        versions = existing_versions(model_dir) if model_dir.is_dir() else []
        if not versions:
            raise ScoringError(f"{model_dir}: no published versions")
        return self.version if self.version in versions else versions[-1]

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[str]:
        answers: list[str] = []
        for start in range(0, len(texts), batch_size):
            encodings = self.tokenizer.encode_batch(list(texts[start:start + batch_size]))
            arrays: dict[str, Any] = {
                "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
            }
            logits = self.session.run(None, {name: arrays[name] for name in self.inputs})[0]
            answers.extend(self.labels[int(i)] for i in np.asarray(logits).argmax(axis=-1))
        return answers

    def accuracy(self, texts: Sequence[str], labels: Sequence[str]) -> float:
        predicted = self.predict(texts)
        return float(np.mean([p == t for p, t in zip(predicted, labels, strict=True)])) if labels else float("nan")
