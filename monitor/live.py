"""Live accuracy from the feedback store, as Prometheus metrics: a collector computed at each scrape.

`tuneship monitor serve` runs it; the figures are over the labels that arrived in the last `window_s` seconds,
per model and version, so a new version starts its own series and an alert can compare it with the version's
reference accuracy (tuneship_reference_accuracy, served by the model itself).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

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


def serve(store: FeedbackStore, port: int, window_s: float, host: str = "127.0.0.1") -> Any:
    """Expose the live figures on http://host:port/metrics (a background thread); returns the HTTP server."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(LiveQualityCollector(store, window_s))  # type: ignore[arg-type]
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
