"""The ONNX Runtime bridge's config handling, run outside Triton with a stand-in for the backend utils."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

import onnxruntime as ort
import pytest


@pytest.fixture
def bridge(monkeypatch: pytest.MonkeyPatch) -> Any:
    fake = types.ModuleType("triton_python_backend_utils")
    fake.Logger = types.SimpleNamespace(log_info=lambda message: None)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake)
    module = importlib.import_module("tuneship.deploy.onnxruntime_bridge.model")
    return importlib.reload(module)


def test_thread_counts_and_graph_level_are_honoured(bridge: Any) -> None:
    config = {"parameters": {"intra_op_thread_count": {"string_value": "3"},
                             "inter_op_thread_count": {"string_value": "2"}},
              "optimization": {"graph": {"level": 1}}}
    options, notes = bridge.session_options_from_config(config)
    assert options.intra_op_num_threads == 3
    assert options.inter_op_num_threads == 2
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    assert any("graph level 1" in note for note in notes)


@pytest.mark.parametrize(("level", "expected"), [(-1, "ORT_ENABLE_BASIC"), (0, "ORT_ENABLE_ALL"),
                                                 (1, "ORT_ENABLE_EXTENDED"), (2, "ORT_ENABLE_ALL")])
def test_graph_levels_match_the_native_backend(bridge: Any, level: int, expected: str) -> None:
    options, _ = bridge.session_options_from_config({"optimization": {"graph": {"level": level}}})
    assert options.graph_optimization_level == getattr(ort.GraphOptimizationLevel, expected)
    # The exporter measures variants with its own copy of the mapping (the bridge is not importable there).
    from tuneship.exporter.variants import session_options

    assert session_options(level).graph_optimization_level == options.graph_optimization_level


def test_bad_thread_count_is_named(bridge: Any) -> None:
    with pytest.raises(ValueError, match="intra_op_thread_count='many'"):
        bridge.session_options_from_config({"parameters": {"intra_op_thread_count": {"string_value": "many"}}})


def test_gpu_accelerators_are_ignored_on_cpu(bridge: Any) -> None:
    config = {"optimization": {"execution_accelerators": {
        "gpu_execution_accelerator": [{"name": "tensorrt", "parameters": {"precision_mode": "FP16"}}]}}}
    providers, notes = bridge.providers_from_config(config, "CPU")
    assert providers == ["CPUExecutionProvider"]
    assert any("ignoring GPU execution accelerator 'tensorrt'" in note for note in notes)


def test_numpy_2_is_refused_with_a_clear_message(bridge: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bridge.np, "__version__", "2.1.0")
    with pytest.raises(RuntimeError, match=r"numpy 2\.1\.0 .* needs numpy < 2"):
        bridge._check_numpy()
