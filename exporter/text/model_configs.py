"""config.pbtxt for the models of a text classifier (the four of the ensemble layout, or the one of the
single-model layout), built with Triton's model-config protobuf."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import replace

from tritonclient.grpc import model_config_pb2 as mc

from tuneship.exporter.model_configs import instance_group, latest_versions, pipeline_parameters
from tuneship.exporter.options import ServingOptions
from tuneship.model_names import step_model
from tuneship.repository import LABELS_FILE
from tuneship.tasks import TEXT_CLASSIFICATION


def _tokenizer_parameters(config: mc.ModelConfig, max_length: int, pad_token: str, pad_token_id: int,
                          options: ServingOptions) -> None:
    """What triton_models/tokenizer.py reads, in the tokenizer model's config or a single-model classifier's."""
    config.parameters["max_length"].string_value = str(max_length)
    config.parameters["pad_token"].string_value = pad_token
    config.parameters["pad_token_id"].string_value = str(pad_token_id)
    config.parameters["max_text_bytes"].string_value = str(options.max_text_bytes or max_length * 128)


def tokenizer_config(name: str, input_names: Sequence[str], max_length: int, pad_token: str, pad_token_id: int,
                     options: ServingOptions, pipeline: str = "") -> mc.ModelConfig:
    config = mc.ModelConfig(name=name, backend="python", max_batch_size=options.max_batch_size)
    config.input.add(name="TEXT", data_type=mc.TYPE_STRING, dims=[1])
    for input_name in input_names:
        config.output.add(name=input_name, data_type=mc.TYPE_INT64, dims=[-1])
    config.dynamic_batching.max_queue_delay_microseconds = options.queue_delay_us
    instance_group(config, "KIND_CPU", options.python_instance_count)
    latest_versions(config, options.versions_to_serve)
    _tokenizer_parameters(config, max_length, pad_token, pad_token_id, options)
    # A bucket must divide the max length: a text cut at max_length and padded past it would exceed what the model
    # (and a TensorRT engine's profile) accepts.
    config.parameters["pad_to_multiple_of"].string_value = str(math.gcd(options.pad_to_multiple_of, max_length))
    pipeline_parameters(config, pipeline, options)
    return config


def onnx_model_config(name: str, input_names: Sequence[str], num_labels: int, options: ServingOptions,
                      warmup_length: int = 16, graph_level: int = 0) -> mc.ModelConfig:
    """`graph_level` -1 (basic) serves a graph the exporter already optimized exactly as it was measured."""
    config = _token_model_config(name, "onnxruntime_onnx", "model.onnx", input_names, num_labels, options,
                                 warmup_length)
    if graph_level:
        config.optimization.graph.level = graph_level
    if options.intra_op_threads:
        config.parameters["intra_op_thread_count"].string_value = str(options.intra_op_threads)
    return config


def tensorrt_model_config(name: str, input_names: Sequence[str], num_labels: int, options: ServingOptions,
                          profile_max_batch: int, warmup_length: int = 16) -> mc.ModelConfig:
    """A serialized TensorRT engine (model.plan); Triton refuses a max_batch_size above the profile's."""
    if options.max_batch_size > profile_max_batch:
        raise ValueError(f"max_batch_size {options.max_batch_size} exceeds the engine profile's maximum batch "
                         f"{profile_max_batch}")
    if options.instance_kind != "KIND_GPU":
        options = replace(options, instance_kind="KIND_GPU")
    return _token_model_config(name, "tensorrt_plan", "model.plan", input_names, num_labels, options,
                               warmup_length)


def _token_model_config(name: str, platform: str, filename: str, input_names: Sequence[str], num_labels: int,
                        options: ServingOptions, warmup_length: int) -> mc.ModelConfig:
    config = mc.ModelConfig(name=name, platform=platform, max_batch_size=options.max_batch_size,
                            default_model_filename=filename)
    for input_name in input_names:
        config.input.add(name=input_name, data_type=mc.TYPE_INT64, dims=[-1])
    config.output.add(name="logits", data_type=mc.TYPE_FP32, dims=[num_labels])
    config.dynamic_batching.max_queue_delay_microseconds = options.queue_delay_us
    config.dynamic_batching.preferred_batch_size.extend(options.preferred_batch_sizes)
    instance_group(config, options.instance_kind, options.instance_count)
    latest_versions(config, options.versions_to_serve)
    warmup = config.model_warmup.add(name="warmup", batch_size=1)
    for input_name in input_names:
        tensor = warmup.inputs[input_name]
        tensor.data_type = mc.TYPE_INT64
        tensor.dims.append(warmup_length)
        tensor.zero_data = True
    return config


def ensemble_config(name: str, input_names: Sequence[str], labels: Sequence[str],
                    options: ServingOptions) -> mc.ModelConfig:
    num_labels = len(labels)
    config = mc.ModelConfig(name=name, platform="ensemble", max_batch_size=options.max_batch_size)
    # Clients read the label names (in class-id order) from here: one config call, no extra model.
    config.parameters["labels"].string_value = json.dumps(list(labels))
    config.parameters["task"].string_value = TEXT_CLASSIFICATION.name  # what the stack resolves the model's task by
    config.input.add(name="TEXT", data_type=mc.TYPE_STRING, dims=[1])
    config.output.add(name="LABEL", data_type=mc.TYPE_STRING, dims=[1])
    config.output.add(name="PROBABILITIES", data_type=mc.TYPE_FP32, dims=[num_labels])
    latest_versions(config, options.versions_to_serve)
    tokenize = config.ensemble_scheduling.step.add(model_name=step_model(name, "tokenizer"), model_version=-1)
    tokenize.input_map["TEXT"] = "TEXT"
    for input_name in input_names:
        tokenize.output_map[input_name] = input_name
    model = config.ensemble_scheduling.step.add(model_name=step_model(name, "graph"), model_version=-1)
    for input_name in input_names:
        model.input_map[input_name] = input_name
    model.output_map["logits"] = "logits"
    post = config.ensemble_scheduling.step.add(model_name=step_model(name, "postprocess"), model_version=-1)
    post.input_map["logits"] = "logits"
    post.output_map["LABEL"] = "LABEL"
    post.output_map["PROBABILITIES"] = "PROBABILITIES"
    return config


def single_model_config(name: str, labels: Sequence[str], max_length: int, pad_token: str, pad_token_id: int,
                 options: ServingOptions, graph_level: int = 0) -> mc.ModelConfig:
    """The single-model layout's one model: what the ensemble's three steps are told, in one config. The texts of one
    execute() call are tokenized together, so there is nothing to bucket (`pad_to_multiple_of` 1)."""
    config = mc.ModelConfig(name=name, backend="python", max_batch_size=options.max_batch_size)
    config.parameters["labels"].string_value = json.dumps(list(labels))
    config.parameters["task"].string_value = TEXT_CLASSIFICATION.name
    config.parameters["layout"].string_value = "single"
    config.input.add(name="TEXT", data_type=mc.TYPE_STRING, dims=[1])
    config.output.add(name="LABEL", data_type=mc.TYPE_STRING, dims=[1])
    config.output.add(name="PROBABILITIES", data_type=mc.TYPE_FP32, dims=[len(labels)],
                      label_filename=LABELS_FILE)
    config.dynamic_batching.max_queue_delay_microseconds = options.queue_delay_us
    config.dynamic_batching.preferred_batch_size.extend(options.preferred_batch_sizes)
    instance_group(config, "KIND_CPU", options.instance_count)
    latest_versions(config, options.versions_to_serve)
    _tokenizer_parameters(config, max_length, pad_token, pad_token_id, options)
    config.parameters["pad_to_multiple_of"].string_value = "1"
    config.parameters["intra_op_thread_count"].string_value = str(options.intra_op_threads)
    config.parameters["graph_level"].string_value = str(graph_level)
    pipeline_parameters(config, name, options)
    return config
