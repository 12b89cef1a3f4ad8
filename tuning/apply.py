"""Putting a candidate into configs: in the scratch repository while measuring, and into the real one, through
the repository layer and under its lock, when one is chosen."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from tuneship.repository import REPORT_FILE
from tuneship.tuning.options import TuneOptions
from tuneship.tuning.search import Candidate, KeptVariant, runs_graph


def apply(candidate: Candidate, ensemble: mc.ModelConfig, steps: Sequence[mc.ModelConfig],
          graph_level: int | None = None) -> list[mc.ModelConfig]:
    """The pipeline's configs with the candidate's values. Every model of an ensemble takes the same largest
    batch (Triton refuses an ensemble whose batch exceeds a step's); queue delays apply to the batching steps
    before the model (the tokenizer) and to the model itself. `graph_level`: the ONNX Runtime graph level the
    candidate's variant is served at (None: as configured)."""
    configs = []
    for original in [*steps, ensemble]:
        config = mc.ModelConfig()
        config.CopyFrom(original)
        config.max_batch_size = candidate.max_batch_size
        if runs_graph(config):
            config.dynamic_batching.max_queue_delay_microseconds = candidate.queue_delay_us
            kept = [b for b in config.dynamic_batching.preferred_batch_size if b <= candidate.max_batch_size]
            del config.dynamic_batching.preferred_batch_size[:]
            config.dynamic_batching.preferred_batch_size.extend(kept)
            if config.instance_group:
                config.instance_group[0].count = candidate.instance_count
            if candidate.intra_op_threads:
                config.parameters["intra_op_thread_count"].string_value = str(candidate.intra_op_threads)
            elif "intra_op_thread_count" in config.parameters:
                del config.parameters["intra_op_thread_count"]
            if graph_level is not None and config.platform == "onnxruntime_onnx":
                config.optimization.graph.level = graph_level
            elif graph_level is not None:  # a single-model classifier sets up its own ONNX Runtime session
                config.parameters["graph_level"].string_value = str(graph_level)
        elif config.HasField("dynamic_batching") and config.dynamic_batching.max_queue_delay_microseconds:
            config.dynamic_batching.max_queue_delay_microseconds = candidate.queue_delay_us
        configs.append(config)
    return configs


def write_configs(repository: Path, configs: Sequence[mc.ModelConfig]) -> list[str]:
    from tuneship.repository import write_config

    return [str(write_config(repository, config)) for config in configs]


def install_variant(repository: Path, onnx_step: mc.ModelConfig, source: Path) -> None:
    """Put a variant's ONNX file in place of the latest version's model file (in the scratch repository)."""
    from tuneship.repository import existing_versions

    folder = repository / onnx_step.name
    target = folder / str(existing_versions(folder)[-1]) / (onnx_step.default_model_filename or "model.onnx")
    shutil.copyfile(source, target)


def write_back(options: TuneOptions, ensemble: mc.ModelConfig, steps: Sequence[mc.ModelConfig],
               onnx_step: mc.ModelConfig, chosen: Candidate, kept: KeptVariant | None) -> list[str]:
    """The chosen configs, under the repository lock; a chosen variant other than the published one becomes the
    ONNX model's next version (atomically, as an export publishes) and the export report says which is served."""
    from tuneship.repository import latest_version, publish_copy, repository_lock, write_text_atomic

    configs = apply(chosen, ensemble, steps, kept.graph_level if kept else None)
    written = []
    with repository_lock(options.repository, what=f"tuneship tune of {options.model}"):
        if kept is not None:
            model_config = next(c for c in configs if c.name == onnx_step.name)
            filename = onnx_step.default_model_filename or "model.onnx"
            # The version's other files (a single-model classifier's tokenizer, labels, code) come along; the kept
            # variants too, linked rather than copied where the file system allows.
            version = publish_copy(latest_version(options.repository, onnx_step.name), options.repository,
                                   model_config, replace={filename: kept.path}, link=True)
            written.append(str(options.repository / onnx_step.name / str(version) / filename))
            configs = [c for c in configs if c.name != onnx_step.name]
            report_path = options.repository / options.model / REPORT_FILE
            if report_path.is_file():
                report = json.loads(report_path.read_text(encoding="utf-8"))
                report["tuned_variant"] = kept.name
                write_text_atomic(report_path, json.dumps(report, indent=2) + "\n")
        written += write_configs(options.repository, configs)
    return written


def single_model_copy(options: TuneOptions, scratch: Path, candidate: Candidate, kept: KeptVariant | None) -> str:
    """The published ensemble as a single-model classifier beside it in the scratch repository, at `candidate`'s
    settings (and precision variant)."""
    from tuneship.exporter import single_model_from_ensemble
    from tuneship.repository import read_config

    name = f"{options.model}_single_model"
    version = single_model_from_ensemble(options.repository, options.model, scratch, name)
    if kept is not None:
        shutil.copyfile(kept.path, scratch / name / str(version) / "model.onnx")
    config = read_config(scratch, name)
    write_configs(scratch, apply(candidate, config, [], kept.graph_level if kept else None))
    return name
