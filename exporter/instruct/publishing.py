"""The served generator: one decoupled Python model holding an onnxruntime-genai model folder."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tritonclient.grpc import model_config_pb2 as mc

from tuneship.exporter.instruct.build import GenaiVariant
from tuneship.exporter.instruct.options import GenerationServing
from tuneship.repository import LABELS_FILE, SOURCE_FILE, publish_version, write_text_atomic
from tuneship.serving import REFERENCE_FILE, publish_bundle, requirements
from tuneship.tasks import TEXT_GENERATION

# (name, type, dims, optional): the vLLM/TensorRT-LLM backends' names, so Triton's generate endpoints work.
INPUTS = (
    ("text_input", mc.TYPE_STRING, [1], True),
    ("messages", mc.TYPE_STRING, [1], True),
    ("stream", mc.TYPE_BOOL, [1], True),
    ("sampling_parameters", mc.TYPE_STRING, [1], True),
    ("max_tokens", mc.TYPE_INT32, [1], True),
    ("min_tokens", mc.TYPE_INT32, [1], True),
    ("temperature", mc.TYPE_FP32, [1], True),
    ("top_p", mc.TYPE_FP32, [1], True),
    ("top_k", mc.TYPE_INT32, [1], True),
    ("repetition_penalty", mc.TYPE_FP32, [1], True),
    ("random_seed", mc.TYPE_UINT64, [1], True),
    ("stop", mc.TYPE_STRING, [-1], True),
    ("raw", mc.TYPE_BOOL, [1], True),  # a prompt read as it is, without the chat template
    # What Triton's OpenAI frontend sends a vLLM-style model: the same repository serves behind it too.
    ("stop_words", mc.TYPE_STRING, [-1], True),
    ("exclude_input_in_output", mc.TYPE_BOOL, [1], True),
    ("return_num_input_tokens", mc.TYPE_BOOL, [1], True),
    ("return_num_output_tokens", mc.TYPE_BOOL, [1], True),
)
OUTPUTS = (
    ("text_output", mc.TYPE_STRING, [-1]),
    ("finish_reason", mc.TYPE_STRING, [1]),
    ("completion_tokens", mc.TYPE_INT32, [1]),
    ("prompt_tokens", mc.TYPE_INT32, [1]),
    ("cached_prompt_tokens", mc.TYPE_INT32, [1]),
    ("num_input_tokens", mc.TYPE_UINT32, [1]),  # the vLLM backend's names of the two counts above
    ("num_output_tokens", mc.TYPE_UINT32, [1]),
)


def generator_config(name: str, serving: GenerationServing) -> mc.ModelConfig:
    config = mc.ModelConfig(name=name, backend="python", max_batch_size=0)
    config.model_transaction_policy.decoupled = True
    for input_name, data_type, dims, optional in INPUTS:
        config.input.add(name=input_name, data_type=data_type, dims=dims, optional=optional)
    for output_name, data_type, dims in OUTPUTS:
        config.output.add(name=output_name, data_type=data_type, dims=dims)
    config.instance_group.add(kind=mc.ModelInstanceGroup.Kind.Value("KIND_CPU"), count=1)
    config.version_policy.latest.num_versions = serving.versions_to_serve
    for key in ("default_max_tokens", "max_tokens_limit", "max_prompt_tokens", "max_concurrency", "max_queue",
                "intra_op_threads", "prefix_cache_mb", "stream_interval_ms"):
        config.parameters[key].string_value = str(getattr(serving, key))
    config.parameters["task"].string_value = TEXT_GENERATION.name
    return config


def publish_generator(repository: Path, name: str, variant: GenaiVariant, serving: GenerationServing,
                      keep: int | None, source: dict[str, str] | None = None, labels: Sequence[str] = (),
                      reference: dict[str, Any] | None = None) -> int:
    """`labels`: the closed set the model was tuned to answer with (sentiment words), written as `labels.txt`: the
    served model counts its answers by label (`tuneship_generation_answers_total{label}`). `reference`: the
    version's behaviour on held-out prompts (`reference.json`), served as gauges beside the live counts."""
    def fill(target: Path) -> None:
        if reference is not None:
            (target / REFERENCE_FILE).write_text(json.dumps(reference, indent=2) + "\n", encoding="utf-8")
        if source is not None:
            (target / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
        if labels:
            (target / LABELS_FILE).write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")
        for item in variant.path.iterdir():
            if item.is_file():
                shutil.copy2(item, target / item.name)
        publish_bundle(target)

    version = publish_version(repository, generator_config(name, serving), fill, keep)
    write_text_atomic(repository / name / "requirements.txt", requirements())
    return version


def generation_serving(repository: Path, name: str) -> GenerationServing:
    """The serving settings of the published generator `name` as its config says now (what an export, `tuneship
    tune` or a hand edit left there), so a new version published for it (`tuneship update`) keeps them."""
    from dataclasses import fields

    from tuneship.repository import read_config

    config = read_config(repository, name)
    values: dict[str, Any] = {}
    for spec in fields(GenerationServing):
        if spec.name in config.parameters:
            raw = config.parameters[spec.name].string_value
            values[spec.name] = raw if spec.type in ("str", str) else int(raw)
    values["versions_to_serve"] = config.version_policy.latest.num_versions or 1
    return GenerationServing(**values)
