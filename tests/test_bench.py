"""tuneship bench's figures without a server: an ensemble's queue and compute, the latency chart."""

from __future__ import annotations

from tuneship.client.bench import LevelResult, ensemble_split, latency_figure


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


