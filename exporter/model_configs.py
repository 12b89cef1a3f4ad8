"""config.pbtxt building blocks every task's models use (built with Triton's model-config protobuf), and the
classifiers' shared postprocess model. A task's own configs live in its folder (text/model_configs.py,
image/publishing.py, instruct/publishing.py)."""

from __future__ import annotations

from tritonclient.grpc import model_config_pb2 as mc

from tuneship.exporter.options import ServingOptions
from tuneship.repository import LABELS_FILE

__all__ = ["ServingOptions", "add_tensorrt_accelerator", "instance_group", "latest_versions", "pipeline_parameters",
           "postprocess_config"]


def pipeline_parameters(config: mc.ModelConfig, pipeline: str, options: ServingOptions) -> None:
    """The name callers use (the ensemble's), for the quality metrics of the pipeline's Python models."""
    config.parameters["pipeline"].string_value = pipeline or config.name
    config.parameters["quality_metrics"].string_value = "true" if options.quality_metrics else "false"


def instance_group(config: mc.ModelConfig, kind: str, count: int) -> None:
    config.instance_group.add(kind=mc.ModelInstanceGroup.Kind.Value(kind), count=count)


def latest_versions(config: mc.ModelConfig, versions: int) -> None:
    config.version_policy.latest.num_versions = versions


def postprocess_config(name: str, num_labels: int, options: ServingOptions, pipeline: str = "") -> mc.ModelConfig:
    config = mc.ModelConfig(name=name, backend="python", max_batch_size=options.max_batch_size)
    config.input.add(name="logits", data_type=mc.TYPE_FP32, dims=[num_labels])
    config.output.add(name="LABEL", data_type=mc.TYPE_STRING, dims=[1])
    config.output.add(name="PROBABILITIES", data_type=mc.TYPE_FP32, dims=[num_labels], label_filename=LABELS_FILE)
    config.dynamic_batching.max_queue_delay_microseconds = 0
    instance_group(config, "KIND_CPU", options.python_instance_count)
    latest_versions(config, options.versions_to_serve)
    pipeline_parameters(config, pipeline, options)
    return config


def add_tensorrt_accelerator(config: mc.ModelConfig, precision_mode: str = "FP16",
                             workspace_bytes: int = 1 << 30, cache_path: str = "/tmp/tuneship-trt-cache") -> None:
    """ONNX Runtime's TensorRT execution provider inside Triton, with its engine cache on.

    The native ONNX Runtime backend builds TensorRT engines for the ONNX model at load time; the
    cache keeps them across restarts. The embedded CPU server's bridge ignores this (and says so).
    """
    accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
    accelerator.parameters["precision_mode"] = precision_mode
    accelerator.parameters["max_workspace_size_bytes"] = str(workspace_bytes)
    accelerator.parameters["trt_engine_cache_enable"] = "1"
    accelerator.parameters["trt_engine_cache_path"] = cache_path
