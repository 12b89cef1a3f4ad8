"""The models of a text classifier, published as the next version of each (see model_repository/README.md): the
ensemble layout's four, or the single-model layout's one."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneship.exporter.errors import ExportError
from tuneship.exporter.model_configs import add_tensorrt_accelerator, postprocess_config
from tuneship.exporter.publishing import (
    PYTHON_MODEL_REQUIREMENTS,
    TRITON_MODELS,
    fill_labels_and_reference,
    fill_postprocess,
    published_labels,
)
from tuneship.exporter.quality import REFERENCE_FILE
from tuneship.exporter.text.model_configs import (
    ensemble_config,
    onnx_model_config,
    single_model_config,
    tensorrt_model_config,
    tokenizer_config,
)
from tuneship.exporter.variants import Variant
from tuneship.model_names import step_model
from tuneship.repository import LABELS_FILE, publish_version, write_text_atomic

if TYPE_CHECKING:
    from tuneship.exporter.text.options import TextExportOptions


def publish_models(options: TextExportOptions, name: str, checkpoint: Any, tokenizer: Any, input_names: list[str],
                   variant: Variant, labels: list[str], reference: dict[str, Any] | None = None) -> dict[str, int]:
    """Every model of the pipeline as its next version; `reference` (the variant's behaviour on held-out texts)
    goes beside the postprocess model, which serves it as the baseline for drift."""
    repo, serving = options.repository, options.serving
    if options.target == "gpu" and serving.instance_kind == "KIND_CPU":
        serving = replace(serving, instance_kind="KIND_GPU")
    pad_token = tokenizer.pad_token or "[PAD]"
    pad_id = int(tokenizer.pad_token_id or 0)

    engine = variant.format == "tensorrt_plan"

    def fill_model(target: Path) -> None:
        shutil.copy2(variant.path, target / ("model.plan" if engine else "model.onnx"))

    def fill_tokenizer(target: Path) -> None:
        shutil.copy2(TRITON_MODELS / "tokenizer.py", target / "model.py")
        shutil.copy2(checkpoint.path / "tokenizer.json", target / "tokenizer.json")

    def fill_ensemble(target: Path) -> None:
        steps = ", ".join(step_model(name, step) for step in ("tokenizer", "graph", "postprocess"))
        (target / "README").write_text(f"ensemble of {steps}\n")

    if serving.layout == "single":
        return publish_single_model(options, name, checkpoint, variant, labels, reference, pad_token, pad_id)
    num_labels = len(labels)
    graph_name, tokenizer_name, post_name = (step_model(name, step) for step in ("graph", "tokenizer", "postprocess"))
    if engine:
        model_config = tensorrt_model_config(graph_name, input_names, num_labels, serving,
                                             profile_max_batch=variant.profile.max_batch,
                                             warmup_length=min(16, variant.profile.max_sequence))
    else:
        model_config = onnx_model_config(graph_name, input_names, num_labels, serving,
                                         graph_level=variant.graph_level)
    if options.target == "gpu" and not engine:
        mode = {"int8": "INT8", "fp16": "FP16"}.get(variant.precision,
                                                    "FP16" if options.precision == "auto" else "FP32")
        add_tensorrt_accelerator(model_config, mode)
    post_config = postprocess_config(post_name, num_labels, serving, pipeline=name)
    versions = {
        graph_name: publish_version(repo, model_config, fill_model, options.keep),
        tokenizer_name: publish_version(
            repo, tokenizer_config(tokenizer_name, input_names, checkpoint.max_length, pad_token, pad_id,
                                   serving, pipeline=name), fill_tokenizer, options.keep),
        post_name: publish_version(repo, post_config, lambda t: fill_postprocess(t, labels, reference),
                                   options.keep),
    }
    # Beside config.pbtxt: the labels file the config names, and what the Python models need installed.
    write_text_atomic(repo / post_config.name / LABELS_FILE, "\n".join(labels) + "\n")
    write_text_atomic(repo / tokenizer_name / "requirements.txt", PYTHON_MODEL_REQUIREMENTS["tokenizer"])
    write_text_atomic(repo / post_config.name / "requirements.txt", PYTHON_MODEL_REQUIREMENTS["postprocess"])
    versions[name] = publish_version(repo, ensemble_config(name, input_names, labels, serving), fill_ensemble,
                                     options.keep)
    return versions


def fill_single_model(target: Path, tokenizer_json: Path, graph: Path, labels: list[str],
               reference: dict[str, Any] | None) -> None:
    """A single-model classifier's version folder: its code, the two step modules it reuses, the tokenizer, the graph,
    the labels and the reference behaviour."""
    shutil.copy2(TRITON_MODELS / "pipeline.py", target / "model.py")
    shutil.copy2(TRITON_MODELS / "tokenizer.py", target / "tuneship_tokenizer.py")
    shutil.copy2(TRITON_MODELS / "postprocess.py", target / "tuneship_postprocess.py")
    shutil.copy2(tokenizer_json, target / "tokenizer.json")
    shutil.copy2(graph, target / "model.onnx")
    fill_labels_and_reference(target, labels, reference)


def publish_single_model(options: TextExportOptions, name: str, checkpoint: Any, variant: Variant, labels: list[str],
                  reference: dict[str, Any] | None, pad_token: str, pad_id: int) -> dict[str, int]:
    """`<name>` as one Python model: its version folder holds everything the ensemble's three models hold."""
    if variant.format != "onnx" or options.target != "cpu":
        raise ExportError(f"--layout single runs the ONNX graph in ONNX Runtime on the CPU; {variant.name} for "
                          f"--target {options.target} is served by the ensemble layout (--layout ensemble)")

    def fill(target: Path) -> None:
        fill_single_model(target, checkpoint.path / "tokenizer.json", variant.path, labels, reference)

    config = single_model_config(name, labels, checkpoint.max_length, pad_token, pad_id, options.serving,
                          graph_level=variant.graph_level)
    version = publish_version(options.repository, config, fill, options.keep)
    write_text_atomic(options.repository / name / LABELS_FILE, "\n".join(labels) + "\n")
    write_text_atomic(options.repository / name / "requirements.txt", PYTHON_MODEL_REQUIREMENTS["pipeline"])
    return {name: version}


def single_model_from_ensemble(repository: Path, name: str, target: Path, target_name: str) -> int:
    """The published ensemble `name`'s latest files (ONNX graph, tokenizer, labels, reference) as a single-model
    classifier `target_name` in `target`, with the ensemble's serving settings: what `--layout single` would have
    published for the same export (`tuneship tune` measures it beside the ensemble)."""
    from tuneship.exporter.layout import serving_options
    from tuneship.repository import Pipeline

    pipeline = Pipeline(repository, name)
    graph, tokenizer, post = (pipeline.version_dir(pipeline.step(step)) for step in ("graph", "tokenizer",
                                                                                        "postprocess"))
    if not (graph / "model.onnx").is_file():
        raise ExportError(f"{graph}: no model.onnx (a TensorRT engine has no single-model layout)")
    model_config = pipeline.config(pipeline.graph_model)
    token_config = pipeline.config(pipeline.step("tokenizer"))
    labels = published_labels(repository, name) or []
    parameters = {k: v.string_value for k, v in token_config.parameters.items()}
    serving = replace(serving_options(repository, name), layout="single")
    reference_path = post / REFERENCE_FILE
    reference = json.loads(reference_path.read_text(encoding="utf-8")) if reference_path.is_file() else None

    def fill(folder: Path) -> None:
        fill_single_model(folder, tokenizer / "tokenizer.json", graph / "model.onnx", labels, reference)

    config = single_model_config(target_name, labels, int(parameters.get("max_length", "512")),
                          parameters.get("pad_token", "[PAD]"), int(parameters.get("pad_token_id", "0")), serving,
                          graph_level=model_config.optimization.graph.level)
    config.parameters["pipeline"].string_value = name
    version = publish_version(target, config, fill)
    write_text_atomic(target / target_name / LABELS_FILE, "\n".join(labels) + "\n")
    return version
