"""Parsing Triton's Prometheus text into per-model figures."""

from __future__ import annotations

import pytest

from tuneship.deploy.metrics import parse_metrics

SAMPLE = """# HELP nv_inference_request_success Number of successful inference requests
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="m",version="1"} 8
nv_inference_request_success{model="m",version="2"} 2
# HELP nv_inference_request_failure Number of failed inference requests
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="m",reason="REJECTED",version="1"} 1
nv_inference_request_failure{model="m",reason="BACKEND",version="1"} 1
# TYPE nv_inference_count counter
nv_inference_count{model="m",version="1"} 40
# TYPE nv_inference_exec_count counter
nv_inference_exec_count{model="m",version="1"} 10
# TYPE nv_inference_request_duration_us counter
nv_inference_request_duration_us{model="m",version="1"} 60000
# TYPE nv_cpu_utilization gauge
nv_cpu_utilization 0.5
"""


def test_counters_are_summed_across_versions_and_reasons() -> None:
    m = parse_metrics(SAMPLE).model("m")
    assert m.request_success == 10
    assert m.request_failure == 2
    assert m.average_batch_size == 4.0
    assert m.average_latency_ms == pytest.approx(60000 / 12 / 1000)


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="models with metrics: m"):
        parse_metrics(SAMPLE).model("other")
