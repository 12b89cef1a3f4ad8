"""Live quality from the feedback store, as Prometheus metrics: a collector computed at each scrape.

`tuneship monitor serve` runs it; the figures are over the feedback that arrived in the last `window_s` seconds,
per model and version (and adapter, for generators), so a new version starts its own series and an alert can
compare it with the version's reference (tuneship_reference_accuracy, tuneship_generation_reference_exact_match,
served by the model itself): classifiers' accuracy and macro-F1 over labelled predictions, generators' share of
answers rated good and exact match over reviewed answers (tuneship.monitor.generations).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

from tuneship.monitor.generations import answer_quality
from tuneship.monitor.store import FeedbackStore, window_quality


class LiveQualityCollector:
    def __init__(self, store: FeedbackStore, window_s: float) -> None:
        self.store, self.window_s = store, window_s

    def describe(self) -> list[Any]:
        return []  # collected at scrape time; nothing to register up front

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        window = f"over labels received in the last {self.window_s:g} s"
        accuracy = GaugeMetricFamily("tuneship_live_accuracy", f"Accuracy of served predictions {window}",
                                     labels=["model", "version"])
        f1 = GaugeMetricFamily("tuneship_live_macro_f1", f"Macro-F1 of served predictions {window}",
                               labels=["model", "version"])
        labelled = GaugeMetricFamily("tuneship_live_labelled", f"Labelled predictions {window}",
                                     labels=["model", "version"])
        rows = self.store.labelled(since=time.time() - self.window_s, predicted_only=True)
        for (model, version), figures in sorted(window_quality(rows).items()):
            accuracy.add_metric([model, version], figures["accuracy"])
            f1.add_metric([model, version], figures["macro_f1"])
            labelled.add_metric([model, version], figures["labelled"])
        yield accuracy
        yield f1
        yield labelled
        yield from self._answers(window)

    def _answers(self, window: str) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        names = ["model", "version", "adapter"]
        good = GaugeMetricFamily("tuneship_live_answer_good_share",
                                 f"Share of generated answers rated good {window}", labels=names)
        exact = GaugeMetricFamily("tuneship_live_answer_exact_match",
                                  f"Exact match of reviewed generated answers with the right answer {window}",
                                  labels=names)
        reviewed = GaugeMetricFamily("tuneship_live_answers_reviewed",
                                     f"Generated answers rated or corrected {window}", labels=names)
        rated = GaugeMetricFamily("tuneship_live_answers_rated", f"Generated answers rated {window}", labels=names)
        rows = self.store.generations.reviewed(since=time.time() - self.window_s)
        for key, figures in sorted(answer_quality(rows).items()):
            reviewed.add_metric(list(key), figures["reviewed"])
            rated.add_metric(list(key), figures["rated"])
            if not math.isnan(figures["good_share"]):
                good.add_metric(list(key), figures["good_share"])
            if not math.isnan(figures["exact_match"]):
                exact.add_metric(list(key), figures["exact_match"])
        yield good
        yield exact
        yield reviewed
        yield rated


def serve(store: FeedbackStore, port: int, window_s: float, host: str = "127.0.0.1") -> Any:
    """Expose the live figures on http://host:port/metrics (a background thread); returns the HTTP server."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(LiveQualityCollector(store, window_s))  # type: ignore[arg-type]
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
