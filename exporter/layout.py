"""Which layout a published classifier has, and which of the repository's models make it up.

tuneship publishes a text classifier either as an ensemble (`<name>` scheduling `<name>_tokenizer`, `<name>_model`
and `<name>_postprocess`) or fused (`<name>` alone, a Python model holding the tokenizer, the ONNX graph and the
labels). What works on a published pipeline (updates, rollbacks, scoring, tuning) asks here instead of assuming.
"""

from __future__ import annotations

from pathlib import Path

from tuneship.exporter.errors import ExportError
from tuneship.exporter.model_configs import is_fused, parse_pbtxt


def served_layout(repository: Path, name: str) -> str | None:
    """"ensemble", "fused", "other" (a model tuneship did not publish as a classifier) or None (no such model)."""
    from google.protobuf import text_format

    path = repository / name / "config.pbtxt"
    if not path.is_file():
        return None
    try:
        config = parse_pbtxt(path.read_text(encoding="utf-8"))
    except text_format.ParseError as error:
        raise ExportError(f"{path}: not a valid Triton model config ({error})") from None
    if is_fused(config):
        return "fused"
    return "ensemble" if config.platform == "ensemble" else "other"


def pipeline_models(repository: Path, name: str) -> list[str]:
    """The models a published pipeline is made of, the one callers use last (the order they are loaded in)."""
    if served_layout(repository, name) != "ensemble":
        return [name]
    config = parse_pbtxt((repository / name / "config.pbtxt").read_text(encoding="utf-8"))
    return [step.model_name for step in config.ensemble_scheduling.step] + [name]


def graph_model(repository: Path, name: str) -> str:
    """The model whose versions hold the ONNX graph (and so number the pipeline's versions)."""
    return name if served_layout(repository, name) == "fused" else f"{name}_model"


def check_layout(repository: Path, name: str, layout: str) -> None:
    """Publishing one layout over the other would leave the old one's models half in place: refuse."""
    before = served_layout(repository, name)
    if before is None or before == layout:
        return
    raise ExportError(
        f"{repository / name} is published with the {before} layout, and this export asks for {layout}: export "
        f"under another --name (or --layout {before}); to switch this name, remove its models from the repository "
        "first")
