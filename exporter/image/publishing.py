"""The four models of an image classifier, published as the next version of each:

    <name>               ensemble: IMAGE (encoded bytes) -> LABEL, PROBABILITIES
    <name>_preprocess    Python: decode, resize, crop, normalise (the trainer's own code, copied beside it)
    <name>_model         ONNX: pixel_values [3, S, S] -> logits
    <name>_postprocess   Python: the text classifier's (softmax, label, quality metrics, reference.json)

Everything but the preprocessing model is what the text classifier publishes, so clients, metrics, drift alerts
and `tuneship update`'s switch work the same for both.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tritonclient.grpc import model_config_pb2 as mc

from tuneship.exporter.model_configs import (
    add_tensorrt_accelerator,
    instance_group,
    latest_versions,
    pipeline_parameters,
    postprocess_config,
)
from tuneship.exporter.options import ServingOptions
from tuneship.exporter.publishing import PYTHON_MODEL_REQUIREMENTS, TRITON_MODELS, fill_postprocess
from tuneship.exporter.variants import Variant
from tuneship.model_names import step_model
from tuneship.repository import LABELS_FILE, publish_version, write_text_atomic
from tuneship.tasks import IMAGE_CLASSIFICATION

PREPROCESS_REQUIREMENTS = ("# Needed by this Python model in the Triton image: pip install -r requirements.txt\n"
                           "numpy<2\npillow>=10\n")
MAX_IMAGE_BYTES = 20 << 20


def _preprocessing_source() -> Path:
    from tuneship.trainer import preprocessing

    return Path(preprocessing.__file__)


def preprocess_config(name: str, image_size: int, options: ServingOptions, pipeline: str) -> mc.ModelConfig:
    config = mc.ModelConfig(name=name, backend="python", max_batch_size=options.max_batch_size)
    config.input.add(name="IMAGE", data_type=mc.TYPE_STRING, dims=[1])
    config.output.add(name="pixel_values", data_type=mc.TYPE_FP32, dims=[3, image_size, image_size])
    config.dynamic_batching.max_queue_delay_microseconds = options.queue_delay_us
    instance_group(config, "KIND_CPU", options.python_instance_count)
    latest_versions(config, options.versions_to_serve)
    config.parameters["max_image_bytes"].string_value = str(MAX_IMAGE_BYTES)
    config.parameters["max_pixels"].string_value = "40000000"
    config.parameters["preprocess_threads"].string_value = "0"  # one per core, up to 4
    pipeline_parameters(config, pipeline, options)
    return config


def image_model_config(name: str, image_size: int, num_labels: int, options: ServingOptions,
                       graph_level: int = 0) -> mc.ModelConfig:
    config = mc.ModelConfig(name=name, platform="onnxruntime_onnx", max_batch_size=options.max_batch_size,
                            default_model_filename="model.onnx")
    config.input.add(name="pixel_values", data_type=mc.TYPE_FP32, dims=[3, image_size, image_size])
    config.output.add(name="logits", data_type=mc.TYPE_FP32, dims=[num_labels])
    config.dynamic_batching.max_queue_delay_microseconds = options.queue_delay_us
    config.dynamic_batching.preferred_batch_size.extend(options.preferred_batch_sizes)
    instance_group(config, options.instance_kind, options.instance_count)
    latest_versions(config, options.versions_to_serve)
    if graph_level:
        config.optimization.graph.level = graph_level
    if options.intra_op_threads:
        config.parameters["intra_op_thread_count"].string_value = str(options.intra_op_threads)
    warmup = config.model_warmup.add(name="warmup", batch_size=1)
    tensor = warmup.inputs["pixel_values"]
    tensor.data_type = mc.TYPE_FP32
    tensor.dims.extend([3, image_size, image_size])
    tensor.zero_data = True
    return config


def image_ensemble_config(name: str, labels: Sequence[str], options: ServingOptions) -> mc.ModelConfig:
    config = mc.ModelConfig(name=name, platform="ensemble", max_batch_size=options.max_batch_size)
    config.parameters["labels"].string_value = json.dumps(list(labels))
    config.parameters["task"].string_value = IMAGE_CLASSIFICATION.name
    config.input.add(name="IMAGE", data_type=mc.TYPE_STRING, dims=[1])
    config.output.add(name="LABEL", data_type=mc.TYPE_STRING, dims=[1])
    config.output.add(name="PROBABILITIES", data_type=mc.TYPE_FP32, dims=[len(labels)])
    latest_versions(config, options.versions_to_serve)
    steps = config.ensemble_scheduling.step
    pre = steps.add(model_name=step_model(name, "preprocess"), model_version=-1)
    pre.input_map["IMAGE"] = "IMAGE"
    pre.output_map["pixel_values"] = "pixel_values"
    model = steps.add(model_name=step_model(name, "graph"), model_version=-1)
    model.input_map["pixel_values"] = "pixel_values"
    model.output_map["logits"] = "logits"
    post = steps.add(model_name=step_model(name, "postprocess"), model_version=-1)
    post.input_map["logits"] = "logits"
    post.output_map["LABEL"] = "LABEL"
    post.output_map["PROBABILITIES"] = "PROBABILITIES"
    return config


def publish_image_models(repository: Path, name: str, variant: Variant, labels: list[str],
                         preprocessing: dict[str, Any], serving: ServingOptions, keep: int | None,
                         reference: dict[str, Any] | None, target: str = "cpu") -> dict[str, int]:
    """`target` gpu: the model runs on a GPU instance with ONNX Runtime's TensorRT provider (precision from the
    variant: FP16 for fp16, INT8 for the QDQ int8 graph, else FP16), as the text classifier's ONNX path does."""
    image_size = int(preprocessing["image_size"])
    if target == "gpu" and serving.instance_kind == "KIND_CPU":
        serving = replace(serving, instance_kind="KIND_GPU")
    model_config = image_model_config(step_model(name, "graph"), image_size, len(labels), serving, variant.graph_level)
    if target == "gpu":
        add_tensorrt_accelerator(model_config, {"int8": "INT8", "fp16": "FP16"}.get(variant.precision, "FP16"))

    def fill_model(target: Path) -> None:
        shutil.copy2(variant.path, target / "model.onnx")

    def fill_preprocess(target: Path) -> None:
        shutil.copy2(TRITON_MODELS / "image_preprocess.py", target / "model.py")
        shutil.copy2(_preprocessing_source(), target / "image_preprocessing.py")
        (target / "preprocessing.json").write_text(json.dumps(preprocessing, indent=2) + "\n", encoding="utf-8")

    def fill_ensemble(target: Path) -> None:
        steps = ", ".join(step_model(name, step) for step in ("preprocess", "graph", "postprocess"))
        (target / "README").write_text(f"ensemble of {steps}\n")

    post_config = postprocess_config(step_model(name, "postprocess"), len(labels), serving, pipeline=name)
    versions = {
        step_model(name, "graph"): publish_version(repository, model_config, fill_model, keep),
        step_model(name, "preprocess"): publish_version(repository, preprocess_config(
            step_model(name, "preprocess"), image_size, serving, name), fill_preprocess, keep),
        step_model(name, "postprocess"): publish_version(repository, post_config,
                                               lambda t: fill_postprocess(t, labels, reference), keep),
    }
    write_text_atomic(repository / post_config.name / LABELS_FILE, "\n".join(labels) + "\n")
    write_text_atomic(repository / step_model(name, "preprocess") / "requirements.txt", PREPROCESS_REQUIREMENTS)
    write_text_atomic(repository / post_config.name / "requirements.txt", PYTHON_MODEL_REQUIREMENTS["postprocess"])
    versions[name] = publish_version(repository, image_ensemble_config(name, labels, serving), fill_ensemble, keep)
    return versions
