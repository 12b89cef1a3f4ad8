"""`tuneship export` of an image-classification checkpoint: ONNX graph validated against PyTorch on the held-out
images, fp32 / int8 / fp16 variants through the same accuracy gate and choice as text, then the four models.

The served preprocessing is the trainer's own code, so a served image becomes the pixels the gate measured.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tuneship.exporter.classifier import ClassifierExport
from tuneship.exporter.errors import ExportError
from tuneship.exporter.image.options import IMAGE_PRECISIONS, ImageExportOptions
from tuneship.exporter.image.publishing import publish_image_models
from tuneship.exporter.image.variants import INPUT, convert_fp16, export_image_onnx, quantize_static_int8
from tuneship.exporter.quality import softmax
from tuneship.exporter.selection import VariantReport, unmeasured
from tuneship.exporter.validation import ValidationResult
from tuneship.exporter.variants import Variant, session_options
from tuneship.progress import step

Logits = np.ndarray[Any, Any]


def _eval_images(checkpoint: Path, limit: int) -> tuple[list[bytes], list[str]]:
    listing = checkpoint / "eval.jsonl"
    if not listing.is_file():
        raise ExportError(f"{checkpoint}: eval.jsonl is missing; the held-out images validate the export")
    images, labels = [], []
    for line, raw in enumerate(listing.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        row = json.loads(raw)
        path = checkpoint / str(row["image"])
        if not path.is_file():
            raise ExportError(f"{listing}:{line}: {path} is missing")
        images.append(path.read_bytes())
        labels.append(str(row["label"]))
        if len(images) >= limit:
            break
    if not images:
        raise ExportError(f"{listing}: no held-out images")
    return images, labels


def _pixels(images: Sequence[bytes], preprocessing: Any) -> np.ndarray[Any, Any]:
    from tuneship.trainer import preprocess

    return np.stack([preprocess(data, preprocessing) for data in images])


def batched_logits(run: Callable[[np.ndarray[Any, Any]], Logits], images: Sequence[bytes], preprocessing: Any,
                   batch_size: int = 32) -> Logits:
    """Logits of `run` over images preprocessed a batch at a time (a thousand 224px images are 600 MB)."""
    return np.concatenate([run(_pixels(images[i:i + batch_size], preprocessing))
                           for i in range(0, len(images), batch_size)])


def image_batch_variation(run: Callable[[np.ndarray[Any, Any]], Logits], pixels: np.ndarray[Any, Any]) -> float:
    """Largest change of a class probability between answering an image alone and in a batch with others."""
    if len(pixels) < 2:
        return float("nan")
    alone = np.concatenate([softmax(run(pixels[i:i + 1])) for i in range(len(pixels))])
    return float(np.abs(alone - softmax(run(pixels))).max())


class ImageClassifierExport(ClassifierExport[ImageExportOptions]):
    options_class = ImageExportOptions
    precisions = IMAGE_PRECISIONS

    @property
    def task_name(self) -> str:
        return "image classifier"

    def load(self) -> None:
        from tuneship.trainer import PreprocessSpec, TrainingError, load_image_classifier

        options = self.options
        with step(f"loading checkpoint {self.checkpoint_path}"):
            try:
                self.model, manifest = load_image_classifier(self.checkpoint_path)
            except TrainingError as error:
                raise ExportError(str(error)) from None
        self.labels = [str(label) for label in manifest["labels"]]
        self.preprocessing = PreprocessSpec.from_dict(manifest["preprocessing"])
        images, eval_labels = _eval_images(self.checkpoint_path, max(options.gate_samples, options.validation_texts))
        label_index = {label: i for i, label in enumerate(self.labels)}
        self.gate_images = images[:options.gate_samples]
        self.gate_ids = [label_index[x] for x in eval_labels[:options.gate_samples]]
        self.pixels = _pixels(images[:min(options.validation_texts, 64)], self.preprocessing)
        self.input_names = [INPUT]

    def build(self, workdir: Path) -> list[Variant]:
        import onnxruntime as ort
        import torch

        from tuneship.trainer import CALIBRATION_IMAGES

        options, checkpoint, preprocessing, validation = (self.options, self.checkpoint_path, self.preprocessing,
                                                          self.pixels)
        fp32_path = workdir / "model.onnx"
        with step(f"exporting the fp32 ONNX graph (opset {options.opset}, {preprocessing.image_size}px)"):
            export_image_onnx(self.model, fp32_path, preprocessing.image_size, options.opset)
        with torch.inference_mode():
            self.reference = self.model(torch.from_numpy(validation))["logits"].numpy()
        with step(f"validating the ONNX graph against PyTorch on {len(validation)} held-out images"):
            session = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
            logits = session.run(None, {INPUT: validation})[0]
            diff = np.abs(logits - self.reference).max(axis=-1)
            self.validation = ValidationResult(
                max_abs_diff=float(diff.max()),
                label_agreement=float((logits.argmax(-1) == self.reference.argmax(-1)).mean()),
                examples=len(validation), tolerance=options.tolerance, unit="images",
                worst=[{"text": f"held-out image {i}", "max_abs_diff": float(diff[i])} for i in np.argsort(-diff)[:3]])
        result = self.validation
        print(result.describe())
        if not result.passed:
            raise ExportError(f"not published: ONNX logits differ from PyTorch by up to {result.max_abs_diff:.2e}, "
                              f"over the tolerance {result.tolerance:.0e}")
        variants = [Variant("fp32", fp32_path, "fp32", "the traced graph; ONNX Runtime fuses batch norms at load")]
        calibration_files = sorted((checkpoint / CALIBRATION_IMAGES).glob("*"))
        if calibration_files:
            with step(f"static int8: calibrating activation ranges ({options.calibration}) on "
                      f"{len(calibration_files)} training images"):
                pixels = _pixels([p.read_bytes() for p in calibration_files], preprocessing)
                batches = [pixels[i:i + 8] for i in range(0, len(pixels) - len(pixels) % 8 or len(pixels), 8)]
                variants.append(Variant("int8-static", quantize_static_int8(
                    fp32_path, workdir / "model.int8.onnx", batches, options.per_channel, options.calibration),
                    "int8", f"QDQ U8S8, per-channel weights, {options.calibration} calibration"))
        else:
            print(f"note: {checkpoint} has no {CALIBRATION_IMAGES}/: no int8 variant")
        with step("fp16: converting weights and compute"):
            variants.append(Variant("fp16", convert_fp16(fp32_path, workdir / "model.fp16.onnx"), "fp16",
                                    "fp16 weights and compute, fp32 inputs and outputs"))
        return variants

    def measure(self, variants: list[Variant]) -> list[VariantReport]:
        import onnxruntime as ort

        validation, reference = self.pixels, self.reference
        reports: list[VariantReport] = []
        sessions: dict[str, Any] = {}
        for variant in variants:
            with step(f"measuring {variant.name} on {len(validation)} validation and {len(self.gate_images)} gate "
                      "images"):
                try:
                    session = ort.InferenceSession(str(variant.path), session_options(variant.graph_level),
                                                   providers=["CPUExecutionProvider"])

                    def run(pixels: np.ndarray[Any, Any], session: Any = session) -> Logits:
                        return np.asarray(session.run(None, {INPUT: pixels})[0])

                    logits = run(validation)
                    gate = batched_logits(run, self.gate_images, self.preprocessing)
                except Exception as error:  # fp16 convolutions exist only on GPUs in ONNX Runtime
                    print(f"note: {variant.name} cannot run on this machine's CPU: {str(error).splitlines()[0][:160]}")
                    reports.append(unmeasured(variant, "cannot run on this machine's CPU; not evaluated"))
                    continue
            reports.append(VariantReport(
                name=variant.name, precision=variant.precision, description=variant.description,
                size_bytes=variant.path.stat().st_size, max_abs_diff=float(np.abs(logits - reference).max()),
                label_agreement=float((logits.argmax(-1) == reference.argmax(-1)).mean()),
                accuracy=float((gate.argmax(-1) == np.asarray(self.gate_ids)).mean()), accuracy_drop_points=None,
                latency_ms={"1": float("nan"), "32": float("nan")},
                batch_variation=image_batch_variation(run, validation[:16])))
            sessions[variant.name] = session
            self.gate_logits[variant.name] = gate
        timing = np.concatenate([validation] * (32 // len(validation) + 1))
        with step(f"timing {len(sessions)} variants in turns at batch 1 and 32"):
            timings = self.timing.latencies(sessions, {1: {INPUT: timing[:1]}, 32: {INPUT: timing[:32]}})
        for report in reports:
            report.latency_ms.update(timings.get(report.name, {}))
        return reports

    def publish(self, variant: Variant, chosen: VariantReport) -> dict[str, int]:
        options = self.options
        return publish_image_models(options.repository, self.name, variant, self.labels,
                                    self.preprocessing.to_dict(), options.serving, options.keep,
                                    self.reference_of(chosen), options.target)
