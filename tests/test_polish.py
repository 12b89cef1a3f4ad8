"""Unit tests for the figures and messages users read: bench columns and chart, the exporter's choice,
the client's refusals and metrics, the manifest's resolved options, the single-class warning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tuneship.client import ClientMetrics, ClientOptions, RetryPolicy, ServerUnavailableError, TextClassifier
from tuneship.client.bench import LevelResult, ensemble_split, latency_figure
from tuneship.client.urls import grpc_target, metrics_url
from tuneship.deploy import free_port


def _level(concurrency: int, throughput: float, p95: float, stable: bool = True) -> LevelResult:
    return LevelResult(concurrency=concurrency, requests=100, errors=0, throughput_rps=throughput,
                       texts_per_second=throughput, p50_ms=p95 / 2, p90_ms=p95 * 0.9, p95_ms=p95, p99_ms=p95 * 1.2,
                       windows=3 if stable else 10, stable=stable, client_cpu_percent=10.0)


def test_an_ensembles_queue_and_compute_come_from_its_composing_models() -> None:
    split = {
        "sentiment": {"requests": 100, "queue_ms": 0.004, "compute_ms": 0.01},
        "sentiment_tokenizer": {"requests": 100, "queue_ms": 2.0, "compute_ms": 1.0},
        "sentiment_model": {"requests": 100, "queue_ms": 27.0, "compute_ms": 6.0},
        "sentiment_postprocess": {"requests": 100, "queue_ms": 0.5, "compute_ms": 0.25},
        "other": {"requests": 5, "queue_ms": 500.0, "compute_ms": 500.0},  # unrelated traffic: left out
    }
    assert ensemble_split(split, "sentiment") == {"requests": 100, "queue_ms": 29.5, "compute_ms": 7.25}
    assert ensemble_split(split, "other") == split["other"]


def test_the_latency_chart_keeps_its_last_point_inside_and_marks_unstable_levels() -> None:
    import matplotlib

    matplotlib.use("Agg")
    results = [_level(1, 90, 12), _level(4, 220, 20), _level(32, 435, 157, stable=False)]
    figure = latency_figure(results, "test")
    axis = figure.axes[0]
    assert axis.get_xlim()[1] > 435 * 1.05
    assert axis.get_ylim()[1] > 157 * 1.2 * 1.05  # the p99 of the last level, with room for its label
    labels = axis.get_legend_handles_labels()[1]
    assert "never stabilised" in labels
    stable_only = latency_figure(results[:2], "test").axes[0].get_legend_handles_labels()[1]
    assert "never stabilised" not in stable_only


@pytest.mark.parametrize(("given", "grpc", "metrics"), [
    ("127.0.0.1:9001", "127.0.0.1:9001", "http://127.0.0.1:9001/metrics"),
    ("grpc://triton:9001", "triton:9001", None),
    ("http://triton:9002/metrics", None, "http://triton:9002/metrics"),
    ("http://triton:9002", "triton:9002", "http://triton:9002/metrics"),
    ("triton", "triton:8001", "http://triton:8002/metrics"),
    ("[::1]:9001", "[::1]:9001", "http://[::1]:9001/metrics"),
])
def test_addresses_in_every_form(given: str, grpc: str | None, metrics: str | None) -> None:
    if grpc is not None:
        assert grpc_target(given) == grpc
    if metrics is not None:
        assert metrics_url(given) == metrics


@pytest.mark.parametrize("bad", ["", "host:port", "ftp://x:1", "http://:9"])
def test_bad_addresses_are_named(bad: str) -> None:
    with pytest.raises(ValueError, match=r"address|empty"):
        grpc_target(bad) if not bad.startswith("ftp") else metrics_url(bad)


@pytest.mark.parametrize("size", [0, -1, -5, 2.5, True])
def test_text_classifier_refuses_a_batch_size_that_is_not_positive(size: object) -> None:
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        TextClassifier(None, batch_size=size)  # type: ignore[arg-type]


def test_client_metrics_count_calls_that_fail_before_anything_is_sent() -> None:
    from tuneship.client import TritonClient

    metrics = ClientMetrics(CollectorRegistry())
    options = ClientOptions(timeout_s=2.0, retry=RetryPolicy(max_attempts=1))
    with TritonClient(f"127.0.0.1:{free_port()}", options, metrics) as client, \
            pytest.raises(ServerUnavailableError):
        client.infer("sentiment", {"TEXT": __import__("numpy").array([[b"x"]], dtype=object)})
    registry = metrics.registry
    assert registry.get_sample_value("tuneship_client_errors_total",
                                     {"model": "sentiment", "code": "serverunavailable"}) == 1
    assert registry.get_sample_value("tuneship_client_request_duration_seconds_count",
                                     {"model": "sentiment", "outcome": "serverunavailable"}) == 1


def _report(name: str, precision: str, b32: float, drop: float) -> object:
    from tuneship.exporter.selection import VariantReport

    return VariantReport(name=name, precision=precision, description="", size_bytes=1, max_abs_diff=0.0,
                         label_agreement=1.0, accuracy=0.8 - drop / 100, accuracy_drop_points=drop,
                         latency_ms={"1": 1.0, "32": b32}, passed=True)


def test_the_auto_choice_does_not_flip_on_timing_noise() -> None:
    from tuneship.exporter.selection import choose

    fp32 = _report("fp32-optimized", "fp32", 100.0, 0.0)
    # int8 3% faster in one run, 3% slower in the next: within the 5% margin both times, so fp32 (the more
    # accurate) is published both times, and the report says they were within noise.
    for int8_time in (97.0, 103.0):
        chosen, reason = choose([fp32, _report("int8-dynamic", "int8", int8_time, 0.5)], "auto", "cpu", False)  # type: ignore[list-item]
        assert chosen.name == "fp32-optimized"
        assert "within timing noise" in reason and "int8-dynamic" in reason
    # Clearly faster (30%): int8 wins on speed.
    chosen, reason = choose([fp32, _report("int8-dynamic", "int8", 70.0, 0.5)], "auto", "cpu", False)  # type: ignore[list-item]
    assert chosen.name == "int8-dynamic" and "noise" not in reason


def test_a_batch_invariant_variant_is_preferred_within_the_invariance_margin() -> None:
    from tuneship.exporter.selection import choose

    fp32 = _report("fp32-optimized", "fp32", 108.0, 0.0)
    int8 = _report("int8-dynamic", "int8", 100.0, 0.5)
    fp32.batch_variation, int8.batch_variation = 2e-7, 1.5e-2  # type: ignore[attr-defined]
    chosen, reason = choose([fp32, int8], "auto", "cpu", False)  # type: ignore[list-item]
    assert chosen.name == "fp32-optimized"
    assert "move by up to 1.5e-02 with their batch-mates" in reason and "8% slower" in reason
    # Far slower than the margin allows: the fast variant stays, and the report says what it costs.
    fp32.latency_ms["32"] = 150.0  # type: ignore[attr-defined]
    chosen, reason = choose([fp32, int8], "auto", "cpu", False)  # type: ignore[list-item]
    assert chosen.name == "int8-dynamic" and "over the 10% --invariance-margin" in reason
    chosen, _ = choose([fp32, int8], "auto", "cpu", False, invariance_margin=0.6)  # type: ignore[list-item]
    assert chosen.name == "fp32-optimized"


def test_a_label_change_is_refused_unless_asked_for(tmp_path: Path) -> None:
    from tuneship.exporter.errors import ExportError
    from tuneship.exporter.model_configs import ServingOptions, ensemble_config, to_pbtxt
    from tuneship.exporter.publishing import check_label_change

    (tmp_path / "sentiment").mkdir()
    config = ensemble_config("sentiment", ["input_ids", "attention_mask"], ["neg", "pos"], ServingOptions())
    (tmp_path / "sentiment" / "config.pbtxt").write_text(to_pbtxt(config))
    check_label_change(tmp_path, "sentiment", ["neg", "pos"], allowed=False)
    check_label_change(tmp_path, "new-model", ["a", "b", "c"], allowed=False)
    with pytest.raises(ExportError, match=r"serves labels \['neg', 'pos'\].*--allow-label-change"):
        check_label_change(tmp_path, "sentiment", ["neg", "neutral", "pos"], allowed=False)
    check_label_change(tmp_path, "sentiment", ["neg", "neutral", "pos"], allowed=True)


def test_the_manifest_keeps_the_options_a_method_used_with_defaults_resolved() -> None:
    from tuneship.trainer.config import TrainConfig, resolved_hyperparameters

    lora = resolved_hyperparameters(TrainConfig(method="lora"), {"learning_rate": 1e-3, "lora_targets": "query,value",
                                                                 "logging_steps": 5, "eval_steps": "epoch"})
    assert lora["learning_rate"] == 1e-3 and lora["lora_targets"] == "query,value" and lora["logging_steps"] == 5
    assert None not in lora.values()
    assert "classifier" not in lora and "num_virtual_tokens" not in lora
    features = resolved_hyperparameters(TrainConfig(method="features"), {"feature_cache": "/c"})
    assert features["feature_cache"] == "/c" and features["classifier"] == "logreg"
    assert not {"learning_rate", "lora_rank", "epochs", "num_virtual_tokens"} & set(features)
    json.dumps(lora)


def test_a_model_that_answers_one_class_is_flagged() -> None:
    from tuneship.trainer.training import single_class_warning

    assert "'pos' for all 4 eval texts" in single_class_warning([1, 1, 1, 1], ["neg", "pos"])
    assert single_class_warning([0, 1, 1, 1], ["neg", "pos"]) == ""
