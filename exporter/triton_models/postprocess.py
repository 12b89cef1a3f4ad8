"""Triton Python model: logits -> softmax PROBABILITIES and the LABEL name, and the model's quality metrics.

Installed as `<name>_postprocess/<version>/model.py` next to `labels.txt` (one label per line, in
class-id order) and `reference.json` (the version's behaviour on held-out texts at export). Needs only `numpy<2`
in the Python backend's environment.

Logits that are not finite (NaN or infinite: a broken model or input the model cannot handle) give the
request an error rather than a label picked from NaN probabilities.

Quality metrics, on Triton's metrics endpoint, labelled with the pipeline's name (the ensemble callers use) and
this version: predictions by label, predictions by bin of the top-class probability and its sum, and the
reference's label shares, bin shares and mean confidence as gauges, so that Prometheus compares the two (see
deploy/prometheus/recording_rules.yml). Counts reach the server at most once a second (`quality_flush_s`): with
the request that finds the last flush that old, or else from a timer when that second is up, so a burst's counts
are published within `quality_flush_s` of its last request whatever comes after; and when the model is unloaded.
"""

import json
import os
import threading
import time
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

# Lower edges of the top-class probability bins, when the version has no reference.json to name them.
DEFAULT_EDGES = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


class QualityMetrics:
    """Live predictions by label and confidence bin, beside the reference's shares."""

    def __init__(self, pipeline: str, version: str, labels: list[str], reference: dict[str, Any] | None,
                 flush_s: float = 1.0) -> None:
        self.flush_s, self.flushed = flush_s, time.monotonic()
        self.dirty, self.stopped = False, False
        self.condition = threading.Condition()  # guards the pending counts; the timer waits on it
        self.pending_labels = np.zeros(len(labels), dtype=np.int64)
        self.pending_sum = 0.0
        self.edges = np.asarray((reference or {}).get("confidence_edges", DEFAULT_EDGES), dtype=np.float64)
        bins = [f"{edge:.2f}" for edge in self.edges]
        base = {"model": pipeline, "version": version}
        counter, gauge = pb_utils.MetricFamily.COUNTER, pb_utils.MetricFamily.GAUGE
        # Families are kept on the object: a Metric outlives its family only while the family is referenced.
        self.families = {
            "predictions": pb_utils.MetricFamily("tuneship_predictions_total", "Predictions by label", counter),
            "bins": pb_utils.MetricFamily("tuneship_prediction_confidence_total",
                                          "Predictions by bin of the top-class probability (bin: lower edge)",
                                          counter),
            "sum": pb_utils.MetricFamily("tuneship_prediction_confidence_sum",
                                         "Sum of the top-class probabilities of all predictions", counter),
            "ref_labels": pb_utils.MetricFamily("tuneship_reference_label_share",
                                                "Share of each label on held-out texts at export", gauge),
            "ref_bins": pb_utils.MetricFamily("tuneship_reference_confidence_share",
                                              "Share of each top-class probability bin on held-out texts at export",
                                              gauge),
            "ref_mean": pb_utils.MetricFamily("tuneship_reference_mean_confidence",
                                              "Mean top-class probability on held-out texts at export", gauge),
            "ref_bin_accuracy": pb_utils.MetricFamily(
                "tuneship_reference_bin_accuracy",
                "How often an answer in each top-class probability bin was right on held-out texts at export "
                "(calibrated): the live estimate of accuracy weighs it by the live bin shares", gauge),
            "ref_accuracy": pb_utils.MetricFamily("tuneship_reference_accuracy",
                                                  "Accuracy on held-out texts at export", gauge),
        }
        # Every series exists from the start (at 0), so a label never predicted still counts in the shares.
        self.by_label = [self.families["predictions"].Metric(labels={**base, "label": label}) for label in labels]
        self.by_bin = [self.families["bins"].Metric(labels={**base, "bin": name}) for name in bins]
        self.pending_bins = np.zeros(len(bins), dtype=np.int64)
        self.confidence_sum = self.families["sum"].Metric(labels=base)
        # Gauges live as long as their Metric objects: kept here.
        self.references: list[Any] = []
        if reference is not None:
            gauges = [("ref_labels", {"label": label}, reference["label_share"].get(label, 0.0)) for label in labels]
            gauges += [("ref_bins", {"bin": name}, reference["confidence_share"].get(name, 0.0)) for name in bins]
            gauges.append(("ref_mean", {}, reference["mean_confidence"]))
            if reference.get("accuracy") is not None:
                gauges.append(("ref_accuracy", {}, reference["accuracy"]))
            gauges += [("ref_bin_accuracy", {"bin": name}, value)
                       for name, value in (reference.get("bin_accuracy") or {}).items()]
            for family, extra, value in gauges:
                metric = self.families[family].Metric(labels={**base, **extra})
                metric.set(float(value))
                self.references.append(metric)
        self.timer = threading.Thread(target=self._flush_when_due, name="quality-flush", daemon=True)
        self.timer.start()

    def record(self, probabilities: np.ndarray) -> None:
        top = probabilities.max(axis=-1).astype(np.float64)
        labels = np.bincount(probabilities.argmax(axis=-1), minlength=len(self.by_label))[:len(self.by_label)]
        bins = np.bincount(np.clip(np.searchsorted(self.edges, top, side="right") - 1, 0, len(self.edges) - 1),
                           minlength=len(self.by_bin))
        with self.condition:
            self.pending_labels += labels
            self.pending_bins += bins
            self.pending_sum += float(top.sum())
            self.dirty = True
            if time.monotonic() - self.flushed >= self.flush_s:
                self._flush()
            else:
                self.condition.notify()  # the timer sends them when the second is up

    def _flush_when_due(self) -> None:
        with self.condition:
            while not self.stopped:
                if not self.dirty:
                    self.condition.wait()
                    continue
                due = self.flushed + self.flush_s - time.monotonic()
                if due > 0:
                    self.condition.wait(due)
                    continue
                self._flush()

    def flush(self) -> None:
        """Everything still pending, and the timer stopped (the model is unloading)."""
        with self.condition:
            self.stopped = True
            self._flush()
            self.condition.notify()
        self.timer.join(timeout=5)

    def _flush(self) -> None:
        """Send the counts gathered since the last flush (the condition held): each update is a round trip into
        the server, so they go at most once per `flush_s` instead of several per execute() call."""
        for metric, count in zip(self.by_label, self.pending_labels, strict=False):
            if count:
                metric.increment(int(count))
        for metric, count in zip(self.by_bin, self.pending_bins, strict=False):
            if count:
                metric.increment(int(count))
        if self.pending_sum:
            self.confidence_sum.increment(self.pending_sum)
        self.pending_labels[:] = 0
        self.pending_bins[:] = 0
        self.pending_sum = 0.0
        self.dirty = False
        self.flushed = time.monotonic()


def is_probe(request: Any) -> bool:
    """A liveness probe (`tuneship health`, the healer) says so in a request parameter: not a prediction."""
    try:
        return bool(json.loads(request.parameters() or "{}").get("tuneship_probe"))
    except (AttributeError, ValueError):
        return False


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        directory = os.path.join(args["model_repository"], args["model_version"])
        with open(os.path.join(directory, "labels.txt"), encoding="utf-8") as handle:
            names = [line.rstrip("\n") for line in handle if line.strip()]
        self.labels = np.array([name.encode("utf-8") for name in names], dtype=np.object_)
        self.quality = None
        if parameters.get("quality_metrics", "true") == "true" and hasattr(pb_utils, "MetricFamily"):
            reference = None
            reference_path = os.path.join(directory, "reference.json")
            if os.path.isfile(reference_path):
                with open(reference_path, encoding="utf-8") as handle:
                    reference = json.load(handle)
            pipeline = parameters.get("pipeline", args["model_name"].removesuffix("_postprocess"))
            self.quality = QualityMetrics(pipeline, args["model_version"], names, reference,
                                          float(parameters.get("quality_flush_s", "1.0")))

    def respond(self, logits: np.ndarray, probe: bool, answered: list[np.ndarray]) -> Any:
        """One request's response from its logits; its probabilities join `answered` (for the quality metrics)
        unless it is a probe. Shared with the fused pipeline model (pipeline.py)."""
        logits = logits.astype(np.float32)
        bad = ~np.isfinite(logits).all(axis=-1)
        if bad.any():
            rows = ", ".join(str(int(r)) for r in np.flatnonzero(bad)[:5])
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(
                f"the model returned non-finite logits (NaN or infinity) for row(s) {rows}: no label can be "
                "given; the model or its input is broken"))
        shifted = logits - logits.max(axis=-1, keepdims=True)
        probabilities = np.exp(shifted)
        probabilities /= probabilities.sum(axis=-1, keepdims=True)
        labels = self.labels[probabilities.argmax(axis=-1)].reshape(-1, 1)
        if not probe:
            answered.append(probabilities)
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("LABEL", labels),
            pb_utils.Tensor("PROBABILITIES", probabilities.astype(np.float32)),
        ])

    def record(self, answered: list[np.ndarray]) -> None:
        if self.quality is not None and answered:
            self.quality.record(np.concatenate(answered))

    def execute(self, requests: list[Any]) -> list[Any]:
        answered: list[np.ndarray] = []
        responses = [self.respond(pb_utils.get_input_tensor_by_name(request, "logits").as_numpy(),
                                  is_probe(request), answered) for request in requests]
        self.record(answered)
        return responses

    def finalize(self) -> None:
        if self.quality is not None:
            self.quality.flush()
