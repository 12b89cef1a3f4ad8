"""Client-side Prometheus metrics: declared once, on a registry the caller chooses.

Unlike Triton's latency summaries, these histograms aggregate across client replicas
(sum the buckets, then take quantiles), which is what a service-level latency objective needs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Milliseconds-level request latencies, in seconds (Prometheus' base unit).
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ClientMetrics:
    """Request duration by model and outcome, retries and errors by code, requests in flight.

    Label values are bounded: model names and a fixed set of outcomes and error codes, never texts.
    """

    def __init__(self, registry: CollectorRegistry | None = None, namespace: str = "tuneship_client") -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.request_duration = Histogram(
            "request_duration_seconds", "Duration of inference calls as the client saw them, retries included",
            ["model", "outcome"], namespace=namespace, buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.retries = Counter("retries_total", "Attempts repeated after a retryable failure", ["model", "code"],
                               namespace=namespace, registry=self.registry)
        self.errors = Counter("errors_total", "Calls that failed, by error class", ["model", "code"],
                              namespace=namespace, registry=self.registry)
        self.in_flight = Gauge("requests_in_flight", "Inference calls started and not yet finished", ["model"],
                               namespace=namespace, registry=self.registry)
        # Generation (tuneship.client.Generator): how long until the answer starts, how fast it comes.
        self.time_to_first_token = Histogram(
            "generation_time_to_first_token_seconds", "Time from sending a generation request to its first piece",
            ["model"], namespace=namespace, buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.inter_token = Histogram(
            "generation_inter_token_seconds", "Time between consecutive streamed pieces", ["model"],
            namespace=namespace, buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry)
        self.tokens_per_second = Histogram(
            "generation_tokens_per_second", "Decode speed of each generation after its first token", ["model"],
            namespace=namespace, buckets=(5, 10, 20, 40, 60, 80, 100, 150, 200, 300, 500), registry=self.registry)
        self.generated_tokens = Counter("generation_tokens_total", "Tokens received from generations", ["model"],
                                        namespace=namespace, registry=self.registry)
        self._lock = threading.Lock()

    @contextmanager
    def track(self, model: str) -> Iterator[dict[str, str]]:
        """Time one call; the caller sets `outcome` ("ok" or an error code) in the yielded dict."""
        import time

        state = {"outcome": "ok"}
        gauge = self.in_flight.labels(model)
        gauge.inc()
        started = time.perf_counter()
        try:
            yield state
        finally:
            gauge.dec()
            self.request_duration.labels(model, state["outcome"]).observe(time.perf_counter() - started)

    def serve(self, port: int, address: str = "127.0.0.1") -> None:
        """Expose this registry at http://address:port/metrics for Prometheus to scrape."""
        start_http_server(port, addr=address, registry=self.registry)
