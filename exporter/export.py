"""`tuneship export`: checkpoint -> validated ONNX -> the four models of a Triton text classifier."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from exporter.errors import ExportError
from exporter.model_configs import (
    ServingOptions,
    ensemble_config,
    onnx_model_config,
    postprocess_config,
    tokenizer_config,
)
from exporter.onnx_export import export_onnx
from exporter.repository import check_model_name, publish_version
from exporter.validation import ValidationResult, torch_logits, validate

TRITON_MODELS = Path(__file__).parent / "triton_models"
FALLBACK_TEXTS = [
    "A gripping, beautifully acted film.",
    "Dull, overlong and badly written.",
    "It has its moments, but the ending falls flat.",
    "One of the best movies of the year.",
]


@dataclass
class ExportOptions:
    checkpoint: Path = field(metadata={"help": "checkpoint directory written by `tuneship train`"})
    name: str = field(default="sentiment", metadata={"help": "Triton model name of the ensemble"})
    repository: Path = field(default=Path("model_repository"), metadata={"help": "Triton model repository"})
    opset: int = field(default=17, metadata={"help": "ONNX opset"})
    tolerance: float = field(default=1e-3, metadata={"help": "largest allowed |logit difference| vs PyTorch"})
    validation_texts: int = field(default=256, metadata={"help": "held-out texts used for validation"})
    keep: int | None = field(default=None, metadata={"help": "keep only the newest N versions of each model"})
    serving: ServingOptions = field(default_factory=ServingOptions)


@dataclass
class ExportReport:
    name: str
    repository: str
    versions: dict[str, int]
    onnx_size_bytes: int
    validation: dict[str, Any]
    eval_accuracy: float | None
    latency_ms: dict[str, float]
    input_names: list[str]

    def describe(self) -> str:
        lines = [f"published {self.name} to {self.repository}: "
                 + ", ".join(f"{m} v{v}" for m, v in self.versions.items()),
                 f"ONNX model {self.onnx_size_bytes / 1e6:.1f} MB; latency (ONNX Runtime, this machine) "
                 + ", ".join(f"batch {b}: {ms:.1f} ms" for b, ms in self.latency_ms.items())]
        if self.eval_accuracy is not None:
            count = self.validation["examples"]
            lines.append(f"eval accuracy (ONNX) {self.eval_accuracy:.4f} on {count} held-out texts")
        return "\n".join(lines)


def _held_out_texts(checkpoint: Any, limit: int) -> tuple[list[str], list[str]]:
    path = checkpoint.eval_data
    if path is None:
        return FALLBACK_TEXTS, []
    texts, labels = [], []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            texts.append(record["text"])
            labels.append(record["label"])
    return texts[:limit], labels[:limit]


def _latency_ms(session: Any, input_names: list[str], batch: int, length: int = 32, repeats: int = 10) -> float:
    feeds = {name: np.ones((batch, length), dtype=np.int64) for name in input_names}
    session.run(None, feeds)
    started = time.perf_counter()
    for _ in range(repeats):
        session.run(None, feeds)
    return (time.perf_counter() - started) / repeats * 1000.0


def export_checkpoint(options: ExportOptions) -> ExportReport:
    from trainer import TrainingError, load_classifier

    name = check_model_name(options.name)
    try:
        model, tokenizer, checkpoint = load_classifier(Path(options.checkpoint))
    except TrainingError as error:
        raise ExportError(str(error)) from None
    if not getattr(tokenizer, "is_fast", False) or not (checkpoint.path / "tokenizer.json").is_file():
        raise ExportError(
            f"{checkpoint.path}: a fast tokenizer (tokenizer.json) is needed to tokenize inside Triton")
    labels = checkpoint.labels
    if model.config.num_labels != len(labels):
        raise ExportError(
            f"{checkpoint.path}: the model has {model.config.num_labels} labels, the manifest {len(labels)}")

    options.repository.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=".export-", dir=options.repository))
    try:
        onnx_path = workdir / "model.onnx"
        from exporter.prompt_folding import fold_prompt, is_prompt_learning

        graph_model = fold_prompt(model) if is_prompt_learning(model) else model
        input_names = export_onnx(graph_model, tokenizer, onnx_path, options.opset)
        texts, text_labels = _held_out_texts(checkpoint, options.validation_texts)
        reference = torch_logits(model, tokenizer, texts, checkpoint.max_length)
        result = validate(onnx_path, reference, tokenizer, input_names, texts, checkpoint.max_length,
                          options.tolerance)
        print(result.describe())
        if not result.passed:
            raise ExportError(_validation_failure(result))
        import onnxruntime as ort

        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        accuracy = None
        if text_labels:
            from exporter.validation import onnx_logits

            predicted = onnx_logits(session, tokenizer, input_names, texts, checkpoint.max_length).argmax(-1)
            accuracy = float(np.mean([labels[i] == label for i, label in zip(predicted, text_labels, strict=True)]))
        latency = {str(b): round(_latency_ms(session, input_names, b), 2) for b in (1, 32)}
        versions = _publish(options, name, checkpoint, tokenizer, input_names, onnx_path, labels)
        report = ExportReport(
            name=name, repository=str(options.repository), versions=versions,
            onnx_size_bytes=onnx_path.stat().st_size, validation=asdict(result), eval_accuracy=accuracy,
            latency_ms=latency, input_names=input_names,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report_path = options.repository / name / "export_report.json"
    report_path.write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    print(report.describe())
    return report


def _validation_failure(result: ValidationResult) -> str:
    worst = "; ".join(f"{w['max_abs_diff']:.2e} on {w['text']!r}" for w in result.worst)
    return (f"not published: ONNX logits differ from PyTorch by up to {result.max_abs_diff:.2e}, over the "
            f"tolerance {result.tolerance:.0e} (label agreement {100 * result.label_agreement:.2f}%); "
            f"worst inputs: {worst}. Raise --tolerance only if the drift is understood.")


def _publish(options: ExportOptions, name: str, checkpoint: Any, tokenizer: Any, input_names: list[str],
             onnx_path: Path, labels: list[str]) -> dict[str, int]:
    repo, serving = options.repository, options.serving
    pad_token = tokenizer.pad_token or "[PAD]"
    pad_id = int(tokenizer.pad_token_id or 0)

    def fill_model(target: Path) -> None:
        shutil.copy2(onnx_path, target / "model.onnx")

    def fill_tokenizer(target: Path) -> None:
        shutil.copy2(TRITON_MODELS / "tokenizer.py", target / "model.py")
        shutil.copy2(checkpoint.path / "tokenizer.json", target / "tokenizer.json")

    def fill_postprocess(target: Path) -> None:
        shutil.copy2(TRITON_MODELS / "postprocess.py", target / "model.py")
        (target / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")

    def fill_ensemble(target: Path) -> None:
        (target / "README").write_text(f"ensemble of {name}_tokenizer, {name}_model, {name}_postprocess\n")

    num_labels = len(labels)
    post_config = postprocess_config(f"{name}_postprocess", num_labels, serving)
    versions = {
        f"{name}_model": publish_version(repo, onnx_model_config(f"{name}_model", input_names, num_labels, serving),
                                         fill_model, options.keep),
        f"{name}_tokenizer": publish_version(
            repo, tokenizer_config(f"{name}_tokenizer", input_names, checkpoint.max_length, pad_token, pad_id,
                                   serving), fill_tokenizer, options.keep),
        f"{name}_postprocess": publish_version(repo, post_config, fill_postprocess, options.keep),
    }
    # The labels file named in the config lives beside config.pbtxt (Triton's convention).
    (repo / post_config.name / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    versions[name] = publish_version(repo, ensemble_config(name, input_names, labels, serving), fill_ensemble,
                                     options.keep)
    return versions
