"""config.pbtxt generation and atomic version publishing (no server needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from tuneship.exporter.model_configs import postprocess_config
from tuneship.exporter.options import ServingOptions
from tuneship.exporter.text.model_configs import (
    ensemble_config,
    onnx_model_config,
    single_model_config,
    tokenizer_config,
)
from tuneship.repository import (
    RepositoryError,
    check_model_name,
    existing_versions,
    is_single_model,
    parse_pbtxt,
    prune_versions,
    publish_version,
    to_pbtxt,
)

INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


def test_onnx_model_config_round_trips_through_text_format() -> None:
    options = ServingOptions(max_batch_size=16, queue_delay_us=500, instance_count=2, intra_op_threads=1,
                             preferred_batch_sizes=(4, 8))
    config = parse_pbtxt(to_pbtxt(onnx_model_config("m_model", INPUTS, 3, options)))
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 16
    assert [i.name for i in config.input] == INPUTS
    assert all(list(i.dims) == [-1] and i.data_type == mc.TYPE_INT64 for i in config.input)
    assert config.output[0].name == "logits" and list(config.output[0].dims) == [3]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.instance_group[0].count == 2
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert config.parameters["intra_op_thread_count"].string_value == "1"
    assert config.version_policy.latest.num_versions == 1
    assert set(config.model_warmup[0].inputs) == set(INPUTS)


def test_a_pre_optimized_graph_is_served_at_basic_level_and_others_at_the_default() -> None:
    plain = parse_pbtxt(to_pbtxt(onnx_model_config("m_model", INPUTS, 2, ServingOptions())))
    assert not plain.HasField("optimization")  # ONNX Runtime's default: all optimizations at load time
    basic = parse_pbtxt(to_pbtxt(onnx_model_config("m_model", INPUTS, 2, ServingOptions(), graph_level=-1)))
    assert basic.optimization.graph.level == -1


def test_ensemble_wires_the_three_steps_and_lists_labels() -> None:
    config = ensemble_config("s", INPUTS[:2], ["neg", "pos"], ServingOptions())
    assert config.platform == "ensemble"
    steps = config.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["s_tokenizer", "s_model", "s_postprocess"]
    assert dict(steps[0].output_map) == {"input_ids": "input_ids", "attention_mask": "attention_mask"}
    assert dict(steps[1].input_map) == dict(steps[0].output_map)
    assert dict(steps[2].output_map) == {"LABEL": "LABEL", "PROBABILITIES": "PROBABILITIES"}
    assert json.loads(config.parameters["labels"].string_value) == ["neg", "pos"]
    assert [o.name for o in config.output] == ["LABEL", "PROBABILITIES"]
    assert list(config.output[1].dims) == [2]


def test_a_fused_classifier_has_the_ensembles_interface_and_its_steps_settings() -> None:
    options = ServingOptions(max_batch_size=32, queue_delay_us=100, instance_count=2, intra_op_threads=1,
                             pad_to_multiple_of=16, quality_metrics=False)
    config = parse_pbtxt(to_pbtxt(single_model_config("s", ["neg", "pos"], 128, "[PAD]", 0, options, graph_level=-1)))
    ensemble = ensemble_config("s", INPUTS, ["neg", "pos"], ServingOptions())
    assert is_single_model(config) and not is_single_model(ensemble)
    assert config.backend == "python" and config.max_batch_size == 32
    assert [(i.name, i.data_type) for i in config.input] == [(i.name, i.data_type) for i in ensemble.input]
    assert [(o.name, list(o.dims)) for o in config.output] == [(o.name, list(o.dims)) for o in ensemble.output]
    assert config.output[1].label_filename == "labels.txt"  # Triton's classification extension works on it
    parameters = {k: v.string_value for k, v in config.parameters.items()}
    assert json.loads(parameters["labels"]) == ["neg", "pos"] and parameters["pipeline"] == "s"
    # One call tokenizes every merged request together: no buckets needed, unlike the ensemble's tokenizer.
    assert parameters["pad_to_multiple_of"] == "1" and parameters["max_length"] == "128"
    assert parameters["intra_op_thread_count"] == "1" and parameters["graph_level"] == "-1"
    assert parameters["quality_metrics"] == "false" and parameters["max_text_bytes"] == str(128 * 128)
    assert config.instance_group[0].count == 2 and config.dynamic_batching.max_queue_delay_microseconds == 100


def test_python_models_declare_string_and_token_tensors() -> None:
    tokenizer = tokenizer_config("s_tokenizer", INPUTS, 64, "[PAD]", 0, ServingOptions())
    assert tokenizer.backend == "python" and tokenizer.input[0].data_type == mc.TYPE_STRING
    assert tokenizer.parameters["max_length"].string_value == "64"
    assert tokenizer.parameters["pad_to_multiple_of"].string_value == "16"
    uneven = tokenizer_config("s_tokenizer", INPUTS, 100, "[PAD]", 0, ServingOptions())
    assert uneven.parameters["pad_to_multiple_of"].string_value == "4"  # buckets never pad past max length
    post = postprocess_config("s_postprocess", 3, ServingOptions())
    assert post.output[1].label_filename == "labels.txt"


@pytest.mark.parametrize("name", ["../evil", "a/b", "", ".hidden", "x" * 200, "sp ace", "a..b"])
def test_bad_model_names_are_refused(name: str) -> None:
    with pytest.raises(RepositoryError, match="invalid model name"):
        check_model_name(name)


def test_publish_adds_versions_atomically_and_prunes(tmp_path: Path) -> None:
    config = postprocess_config("m", 2, ServingOptions())

    def fill(target: Path) -> None:
        (target / "model.py").write_text("# model\n")

    assert publish_version(tmp_path, config, fill) == 1
    assert publish_version(tmp_path, config, fill) == 2
    assert publish_version(tmp_path, config, fill, keep=2) == 3
    assert existing_versions(tmp_path / "m") == [2, 3]
    assert parse_pbtxt((tmp_path / "m" / "config.pbtxt").read_text()).name == "m"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging directories left behind"
    assert prune_versions(tmp_path / "m", 1) == [2]


def test_failed_fill_publishes_nothing(tmp_path: Path) -> None:
    config = postprocess_config("m", 2, ServingOptions())

    def fill(target: Path) -> None:
        (target / "partial").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        publish_version(tmp_path, config, fill)
    assert existing_versions(tmp_path / "m") == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
