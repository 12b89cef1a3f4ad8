"""The exporter's choice among its variants and its publishing refusals, without building a model."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneship.repository import RepositoryError


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
    from tuneship.exporter.options import ServingOptions
    from tuneship.exporter.publishing import check_label_change
    from tuneship.exporter.text.model_configs import ensemble_config
    from tuneship.repository import to_pbtxt

    (tmp_path / "sentiment").mkdir()
    config = ensemble_config("sentiment", ["input_ids", "attention_mask"], ["neg", "pos"], ServingOptions())
    (tmp_path / "sentiment" / "config.pbtxt").write_text(to_pbtxt(config))
    check_label_change(tmp_path, "sentiment", ["neg", "pos"], allowed=False)
    check_label_change(tmp_path, "new-model", ["a", "b", "c"], allowed=False)
    with pytest.raises(ExportError, match=r"serves labels \['neg', 'pos'\].*--allow-label-change"):
        check_label_change(tmp_path, "sentiment", ["neg", "neutral", "pos"], allowed=False)
    check_label_change(tmp_path, "sentiment", ["neg", "neutral", "pos"], allowed=True)




def test_each_export_refuses_options_it_cannot_honour_before_any_work() -> None:
    from tuneship.exporter import ExportError, ImageExportOptions, InstructExportOptions, TextExportOptions
    from tuneship.exporter.image.export import ImageClassifierExport
    from tuneship.exporter.instruct.export import InstructExport
    from tuneship.exporter.options import ServingOptions
    from tuneship.exporter.text.export import TextClassifierExport

    nowhere = Path("does-not-exist")  # nothing is loaded: the options are checked first
    with pytest.raises(ExportError, match="--layout single runs the graph in ONNX Runtime on the CPU"):
        TextClassifierExport(TextExportOptions(checkpoint=nowhere, target="gpu",
                                               serving=ServingOptions(layout="fused"))).check_options()
    with pytest.raises(ExportError, match="--precision int4 is for instruct checkpoints"):
        TextClassifierExport(TextExportOptions(checkpoint=nowhere, precision="int4")).check_options()
    with pytest.raises(ExportError, match="--precision int4 is not available for image classifiers"):
        ImageClassifierExport(ImageExportOptions(checkpoint=nowhere, precision="int4")).check_options()
    with pytest.raises(ExportError, match="--precision int8 is not available for an instruct checkpoint on a GPU"):
        InstructExport(InstructExportOptions(checkpoint=nowhere, precision="int8", target="gpu")).check_options()
    with pytest.raises(ExportError, match="--precision fp16 is not available for an instruct checkpoint on a CPU"):
        InstructExport(InstructExportOptions(checkpoint=nowhere, precision="fp16")).check_options()
    with pytest.raises(RepositoryError, match=r"model name '\.\./x'"):
        TextClassifierExport(TextExportOptions(checkpoint=nowhere, name="../x"))


def test_given_timings_replace_the_measurement_and_name_a_variant_left_out() -> None:
    from tuneship.exporter.timing import Timing

    timing = Timing.given(latency_ms={"fp32": {"1": 1.0, "32": 10.0}}, decode={"int4": (12.0, 150.0)})
    assert timing.latencies({"fp32": object()}, {1: {}, 32: {}}) == {"fp32": {"1": 1.0, "32": 10.0}}
    with pytest.raises(KeyError, match="no latency given for int8-dynamic"):
        timing.latencies({"fp32": object(), "int8-dynamic": object()}, {1: {}, 32: {}})
    assert timing.decode("int4", None, [1, 2]) == (12.0, 150.0)
    with pytest.raises(KeyError, match="no decode speed given for int8"):
        timing.decode("int8", None, [1, 2])
