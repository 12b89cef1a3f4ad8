"""The API's own Prometheus metrics, served at its `/metrics` (Prometheus scrapes it beside Triton's endpoint, the
dashboards read both from the same Prometheus). A registry per app, so several apps in one process (the tests)
keep their counts apart. Model labels are served model ids only (an unknown id counts as "unknown"), so a caller
cannot grow the label set."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("tuneship_api_requests", "API requests by endpoint, model id and HTTP status",
                                ["endpoint", "model", "status"], registry=self.registry)
        self.in_flight = Gauge("tuneship_api_requests_in_flight", "API requests being answered now", ["endpoint"],
                               registry=self.registry)
        self.time_to_first_token = Histogram(
            "tuneship_api_time_to_first_token_seconds", "From the request's arrival to its first answer token",
            ["endpoint", "model"], buckets=TTFT_BUCKETS, registry=self.registry)
        self.duration = Histogram("tuneship_api_request_duration_seconds", "From arrival to the last byte",
                                  ["endpoint", "model"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.tokens = Counter("tuneship_api_tokens", "Tokens of answered requests: prompt, completion, and prompt "
                              "tokens served from a kept cache", ["model", "kind"], registry=self.registry)
        self.disconnects = Counter("tuneship_api_client_disconnects", "Requests whose caller went away before "
                                   "the answer ended (their generation is cancelled)", ["endpoint", "model"],
                                   registry=self.registry)
