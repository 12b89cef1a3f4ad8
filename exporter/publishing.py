"""What the classifiers' publishing shares: the labels a published model answers with (and the refusal to change
them unasked), the postprocess model's files, and the variants kept beside a version for `tuneship tune`."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneship.exporter.errors import ExportError
from tuneship.exporter.quality import REFERENCE_FILE
from tuneship.exporter.variants import Variant
from tuneship.repository import LABELS_FILE, write_text_atomic

if TYPE_CHECKING:
    from tuneship.exporter.selection import VariantReport

TRITON_MODELS = Path(__file__).parent / "triton_models"


PYTHON_MODEL_REQUIREMENTS = {
    "tokenizer": "# Needed by this Python model in the Triton image: pip install -r requirements.txt\n"
                 "numpy<2\ntokenizers>=0.15\n",
    "postprocess": "# Needed by this Python model in the Triton image: pip install -r requirements.txt\nnumpy<2\n",
    "pipeline": "# Needed by this Python model in the Triton image: pip install -r requirements.txt\n"
                "numpy<2\ntokenizers>=0.15\nonnxruntime>=1.17\n",
}


def published_labels(repository: Path, name: str) -> list[str] | None:
    """The labels of the text classifier `name` already in the repository (its ensemble config), if any."""
    from tuneship.repository import Pipeline

    config = Pipeline(repository, name).caller
    if config is None:
        return None
    raw = config.parameters["labels"].string_value if "labels" in config.parameters else ""
    return [str(label) for label in json.loads(raw)] if raw else None


def check_label_change(repository: Path, name: str, labels: list[str], allowed: bool) -> None:
    """A new version with other labels silently changes what every caller gets back: refuse unless asked."""
    before = published_labels(repository, name)
    if before is None or before == labels or allowed:
        return
    raise ExportError(
        f"{repository / name} serves labels {before}, this checkpoint has {labels}: publishing it as the next "
        f"version would change the answers every caller gets; pass --allow-label-change if that is intended, "
        f"or choose another --name")


def fill_postprocess(target: Path, labels: list[str], reference: dict[str, Any] | None) -> None:
    """A postprocess model version: the stub, its labels and the published variant's reference behaviour."""
    shutil.copy2(TRITON_MODELS / "postprocess.py", target / "model.py")
    fill_labels_and_reference(target, labels, reference)


def fill_labels_and_reference(target: Path, labels: list[str], reference: dict[str, Any] | None) -> None:
    (target / LABELS_FILE).write_text("\n".join(labels) + "\n", encoding="utf-8")
    if reference is not None:
        (target / REFERENCE_FILE).write_text(json.dumps(reference, indent=2) + "\n", encoding="utf-8")


VARIANTS_FOLDER = "variants"
VARIANTS_INDEX = "variants.json"


def keep_variants(repository: Path, name: str, version: int, variants: list[Variant],
                  reports: list[VariantReport]) -> list[str]:
    """Every ONNX variant that passed the gate, beside the ensemble version they were measured for
    (`<name>/<version>/variants/`), so `tuneship tune` can sweep precisions as well as batching. Triton reads
    nothing inside an ensemble's version folder, so the repository serves the same either way."""
    passed = {r.name: r for r in reports if r.passed}
    kept = [v for v in variants if v.name in passed and v.format == "onnx" and v.path.is_file()]
    if not kept:
        return []
    folder = repository / name / str(version) / VARIANTS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    index: list[dict[str, Any]] = []
    for variant in kept:
        target = folder / f"{variant.name}.onnx"
        partial = target.with_name(f".{target.name}.partial")
        shutil.copyfile(variant.path, partial)
        partial.replace(target)
        report = passed[variant.name]
        index.append({"name": variant.name, "precision": variant.precision, "file": target.name,
                      "graph_level": variant.graph_level, "accuracy": report.accuracy,
                      "batch_variation": None if math.isnan(report.batch_variation) else report.batch_variation,
                      "latency_ms": report.latency_ms})
    write_text_atomic(folder / VARIANTS_INDEX, json.dumps(index, indent=2) + "\n")
    return [str(entry["name"]) for entry in index]


