"""Read Triton's Prometheus endpoint and summarise it per model."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from tuneship.urls import metrics_url


@dataclass(frozen=True)
class ModelMetrics:
    """Cumulative counters of one model (all versions), as Triton exports them."""

    model: str
    request_success: float
    request_failure: float
    inference_count: float
    execution_count: float
    request_duration_us: float
    queue_duration_us: float
    compute_infer_duration_us: float

    @property
    def average_latency_ms(self) -> float:
        """Average server-side request latency (queue + compute), in milliseconds."""
        requests = self.request_success + self.request_failure
        return self.request_duration_us / requests / 1000.0 if requests else 0.0

    @property
    def average_batch_size(self) -> float:
        return self.inference_count / self.execution_count if self.execution_count else 0.0


@dataclass(frozen=True)
class ServerMetrics:
    models: dict[str, ModelMetrics]

    def model(self, name: str) -> ModelMetrics:
        if name not in self.models:
            known = ", ".join(sorted(self.models)) or "none"
            raise KeyError(f"no metrics for model {name!r} (models with metrics: {known})")
        return self.models[name]


_FIELDS = {
    "nv_inference_request_success": "request_success",
    "nv_inference_request_failure": "request_failure",
    "nv_inference_count": "inference_count",
    "nv_inference_exec_count": "execution_count",
    "nv_inference_request_duration_us": "request_duration_us",
    "nv_inference_queue_duration_us": "queue_duration_us",
    "nv_inference_compute_infer_duration_us": "compute_infer_duration_us",
}


def parse_metrics(text: str) -> ServerMetrics:
    """Sum Triton's per-model, per-version counters into one record per model."""
    totals: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            field_name = _FIELDS.get(sample.name) or _FIELDS.get(sample.name.removesuffix("_total"))
            model = sample.labels.get("model")
            if field_name is None or model is None:
                continue
            # request_failure is split by reason; summing over labels gives the total.
            totals.setdefault(model, {}).setdefault(field_name, 0.0)
            totals[model][field_name] += float(sample.value)
    models = {
        name: ModelMetrics(model=name, **{f: values.get(f, 0.0) for f in _FIELDS.values()})
        for name, values in totals.items()
    }
    return ServerMetrics(models=models)


class MetricsUnavailableError(RuntimeError):
    """The metrics endpoint could not be read; the message says where and why."""


def scrape_metrics(url: str, timeout_s: float = 5.0) -> ServerMetrics:
    """Fetch and parse a Triton metrics endpoint: http://127.0.0.1:8002/metrics, or just 127.0.0.1:8002."""
    full = metrics_url(url)
    try:
        with urllib.request.urlopen(full, timeout=timeout_s) as response:
            text = response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as error:
        raise MetricsUnavailableError(f"{full} answered HTTP {error.code} ({error.reason}): is it Triton's "
                                      "metrics endpoint?") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise MetricsUnavailableError(f"cannot reach Triton's metrics at {full} ({reason})") from None
    try:
        return parse_metrics(text)
    except ValueError as error:
        raise MetricsUnavailableError(f"{full} did not answer in Prometheus' text format ({error})") from None
