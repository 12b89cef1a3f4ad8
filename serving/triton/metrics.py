"""The served generator's Prometheus series, published on Triton's metrics endpoint (:8002) through the Python
backend's custom metrics API. Families are declared once here, labels chosen up front (model, version, and the
bounded sets: finish reason, adapter, constraint, label, length bin); no series is made from request content.

Every update is a call into the server: the model makes them from its sender thread, never in a stream's way.
"""

import types
from collections.abc import Sequence
from typing import Any

import triton_python_backend_utils as pb_utils

ANSWER_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]
TTFT_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
CONSTRAINT_NAMES = ("guided_choice", "guided_regex", "guided_json", "guided_grammar")
REASONS = ("stop", "length", "cancelled", "error")

# Kinds by name: the stub gives triton_python_backend_utils its MetricFamily only once the model is initialized.
COUNTER, GAUGE, HISTOGRAM = "COUNTER", "GAUGE", "HISTOGRAM"
FAMILIES = {
    "tokens": ("tuneship_generation_tokens_total", "Tokens generated (completion tokens)", COUNTER),
    "prompt": ("tuneship_generation_prompt_tokens_total", "Prompt tokens read", COUNTER),
    "requests": ("tuneship_generation_requests_total", "Generation requests by how they finished", COUNTER),
    "ttft": ("tuneship_generation_time_to_first_token_seconds",
             "Server-side time from request to first generated token", HISTOGRAM),
    "running": ("tuneship_generation_running", "Requests generating now", GAUGE),
    "queued": ("tuneship_generation_queued", "Requests waiting for a generation slot", GAUGE),
    "queue_time": ("tuneship_generation_queue_seconds", "Time a request waited for a generation slot", HISTOGRAM),
    "batch": ("tuneship_generation_batch_size", "Requests decoded together per step (continuous batching)",
              HISTOGRAM),
    "cached": ("tuneship_generation_cached_prompt_tokens_total",
               "Prompt tokens served from the prefix cache (any recent request's, a conversation's earlier turns, "
               "the chat template's opening) instead of prefilled", COUNTER),
    "cache_bytes": ("tuneship_generation_prefix_cache_bytes", "Bytes of keys and values in the prefix cache", GAUGE),
    "cache_evicted": ("tuneship_generation_prefix_cache_evicted_blocks_total",
                      "Prefix-cache blocks evicted (least recently used first) to stay within the byte bound",
                      COUNTER),
    "refused": ("tuneship_generation_refused_total", "Requests refused before generating, by reason", COUNTER),
    "answer_tokens": ("tuneship_generation_answer_tokens",
                      "Tokens per finished answer (finish reason stop or length)", HISTOGRAM),
    "empty": ("tuneship_generation_empty_answers_total", "Answers that ended before their first token", COUNTER),
    "labels": ("tuneship_generation_answers_total",
               "Finished answers by label, for a model tuned to answer from a closed set (labels.txt; its first word, "
               "lower-cased; 'other' outside the set)", COUNTER),
    "length_bins": ("tuneship_generation_answer_length_total",
                    "Finished answers by length bin (bin: lower edge in tokens)", COUNTER),
    "ref_finish": ("tuneship_generation_reference_finish_share",
                   "Share of held-out answers at export by finish reason", GAUGE),
    "ref_length": ("tuneship_generation_reference_length_share",
                   "Share of held-out answers at export by length bin", GAUGE),
    "ref_labels": ("tuneship_generation_reference_label_share", "Share of held-out answers at export by label",
                   GAUGE),
    "ref_empty": ("tuneship_generation_reference_empty_share",
                  "Share of held-out answers at export that were empty", GAUGE),
    "ref_exact": ("tuneship_generation_reference_exact_match",
                  "Exact match of held-out answers at export (closed-set models)", GAUGE),
    "constrained": ("tuneship_generation_constrained_requests_total",
                    "Requests with a constraint on their answer, by constraint", COUNTER),
    "constraint": ("tuneship_generation_constraint_failures_total",
                   "Constrained requests whose constraint this model's tokens could not follow, by constraint",
                   COUNTER),
}


class _Discarded:
    """A metric that counts nothing: what a liveness probe's request updates."""

    def increment(self, _value: float) -> None:
        pass

    def observe(self, _value: float) -> None:
        pass


_DISCARDED = _Discarded()
PROBE = types.SimpleNamespace(tokens=_DISCARDED, prompt_tokens=_DISCARDED, ttft=_DISCARDED, cached_tokens=_DISCARDED,
                              answer_tokens=_DISCARDED, empty_answers=_DISCARDED,
                              finished={reason: _DISCARDED for reason in REASONS})


class GeneratorMetrics:
    """The model version's series. `per_request` holds what each request updates; an adapter's requests update
    their own copy (labelled with the adapter), a liveness probe's update nothing (PROBE)."""

    def __init__(self, labels: dict[str, str], answer_labels: list[str], length_edges: list[int],
                 reference: dict[str, Any] | None) -> None:
        # Families are kept: a Metric outlives its family only as long as the family is referenced.
        family = pb_utils.MetricFamily
        self.families = {key: family(name, help_text, getattr(family, kind))
                         for key, (name, help_text, kind) in FAMILIES.items()}
        self.labels = labels
        self.per_request = self._per_request(labels)
        self.running = self._metric("running")
        self.queued = self._metric("queued")
        self.queue_time = self._metric("queue_time", buckets=TTFT_BUCKETS)
        self.batch_size = self._metric("batch", buckets=[1, 2, 3, 4, 6, 8, 12, 16, 32, 64])
        self.cache_bytes = self._metric("cache_bytes")
        self.cache_evicted = self._metric("cache_evicted")
        self.refused = {reason: self._metric("refused", reason=reason) for reason in ("queue_full", "expired")}
        self.constraint_failures = {name: self._metric("constraint", constraint=name) for name in CONSTRAINT_NAMES}
        self.constrained = {name: self._metric("constrained", constraint=name) for name in CONSTRAINT_NAMES}
        self.by_label = {label: self._metric("labels", label=label)
                         for label in [*answer_labels, "other"]} if answer_labels else {}
        # Every bin exists from the start (at 0), so a length never seen still counts in the shares.
        self.by_length = {str(edge): self._metric("length_bins", bin=str(edge)) for edge in length_edges}
        self.reference_gauges = self._reference_gauges(reference, bool(answer_labels))
        self.adapters: dict[str, Any] = {}

    def _metric(self, family: str, buckets: Sequence[float] | None = None, **extra: str) -> Any:
        labels = {**self.labels, **extra}
        if buckets is not None:
            return self.families[family].Metric(labels=labels, buckets=buckets)
        return self.families[family].Metric(labels=labels)

    def _per_request(self, labels: dict[str, str]) -> Any:
        def make(family: str, buckets: Sequence[float] | None = None, **extra: str) -> Any:
            if buckets is not None:
                return self.families[family].Metric(labels={**labels, **extra}, buckets=buckets)
            return self.families[family].Metric(labels={**labels, **extra})

        return types.SimpleNamespace(
            tokens=make("tokens"), prompt_tokens=make("prompt"), ttft=make("ttft", buckets=TTFT_BUCKETS),
            cached_tokens=make("cached"), answer_tokens=make("answer_tokens", buckets=ANSWER_BUCKETS),
            empty_answers=make("empty"), finished={reason: make("requests", finish_reason=reason)
                                                   for reason in REASONS})

    def of(self, adapter: str | None, probe: bool) -> Any:
        """What one request updates (made for an adapter on its first request; adapters are few and named by
        operators, so the label stays bounded)."""
        if probe:
            return PROBE
        if adapter is None:
            return self.per_request
        metrics = self.adapters.get(adapter)
        if metrics is None:
            metrics = self.adapters[adapter] = self._per_request({**self.labels, "adapter": adapter})
        return metrics

    def _reference_gauges(self, reference: dict[str, Any] | None, closed: bool) -> list[Any]:
        """The reference's shares as gauges (kept: a gauge lives as long as its Metric object)."""
        if reference is None:
            return []
        values: list[tuple[str, dict[str, str], Any]] = []
        values += [("ref_finish", {"finish_reason": k}, v) for k, v in reference.get("finish_share", {}).items()]
        values += [("ref_length", {"bin": k}, v) for k, v in reference.get("length_share", {}).items()]
        if closed:
            values += [("ref_labels", {"label": k}, v) for k, v in reference.get("label_share", {}).items()]
        values.append(("ref_empty", {}, reference.get("empty_share")))
        values.append(("ref_exact", {}, reference.get("exact_match")))
        gauges = []
        for family, extra, value in values:
            if isinstance(value, (int, float)):
                metric = self._metric(family, None, **extra)
                metric.set(float(value))
                gauges.append(metric)
        return gauges
