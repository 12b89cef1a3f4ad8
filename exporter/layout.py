"""Which layout a published classifier has, and which of the repository's models make it up.

tuneship publishes a text classifier either as an ensemble (`<name>` scheduling `<name>_tokenizer`, `<name>_model`
and `<name>_postprocess`) or single (`<name>` alone, a Python model holding the tokenizer, the ONNX graph and the
labels). What works on a published pipeline (updates, rollbacks, scoring, tuning) asks here instead of assuming.
"""

from __future__ import annotations

from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from tuneship.exporter.errors import ExportError
from tuneship.exporter.options import ServingOptions
from tuneship.repository import Pipeline, served_layout


def check_layout(repository: Path, name: str, layout: str) -> None:
    """Publishing one layout over the other would leave the old one's models half in place: refuse."""
    before = served_layout(repository, name)
    if before is None or before == layout:
        return
    raise ExportError(
        f"{repository / name} is published with the {before} layout, and this export asks for {layout}: export "
        f"under another --name (or --layout {before}); to switch this name, remove its models from the repository "
        "first")


def serving_options(repository: Path, name: str) -> ServingOptions:
    """The serving settings of the published pipeline `name` as its configs say now (what an export, `tuneship
    tune` or a hand edit left there), so a new version published for it (`tuneship update`) keeps them."""
    pipeline = Pipeline(repository, name)
    caller, layout = pipeline.caller, pipeline.layout
    if caller is None or layout not in ("ensemble", "single"):
        return ServingOptions()
    fused = layout == "single"
    graph = pipeline.config(pipeline.graph_model)
    text = pipeline.config(pipeline.step("tokenizer"))

    def parameter(config: mc.ModelConfig, key: str, default: str) -> str:
        return config.parameters[key].string_value if key in config.parameters else default

    group = graph.instance_group[0] if graph.instance_group else None
    return ServingOptions(
        max_batch_size=graph.max_batch_size, queue_delay_us=graph.dynamic_batching.max_queue_delay_microseconds,
        preferred_batch_sizes=tuple(graph.dynamic_batching.preferred_batch_size),
        instance_count=group.count if group else 1,
        instance_kind=mc.ModelInstanceGroup.Kind.Name(group.kind) if group else "KIND_CPU",
        python_instance_count=text.instance_group[0].count if text.instance_group and not fused else 1,
        intra_op_threads=int(parameter(graph, "intra_op_thread_count", "0") or 0),
        versions_to_serve=caller.version_policy.latest.num_versions or 1,
        pad_to_multiple_of=int(parameter(text, "pad_to_multiple_of", "16")) if not fused else 16,
        max_text_bytes=int(parameter(text, "max_text_bytes", "0") or 0),
        quality_metrics=parameter(text, "quality_metrics", "true") == "true",
        layout=layout)
