"""Model-quality monitoring: each version's reference behaviour, and the live counts the served pipeline exports."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from lanes import costs
from servers import running_server
from waiting import wait_for

from tuneship.client import TextClassifier, TritonClient, TritonError
from tuneship.deploy import TritonServer
from tuneship.exporter.quality import bin_names, confidence_bins, psi, reference_behaviour


def test_reference_behaviour_counts_labels_bins_and_accuracy() -> None:
    # Top-class probabilities 0.5, 0.73, 0.98, 0.9999 (two classes).
    logits = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 4.0], [10.0, 0.0]])
    reference = reference_behaviour(logits, ["a", "b"], [0, 0, 1, 1])
    assert reference["samples"] == 4
    assert reference["label_share"] == {"a": 0.75, "b": 0.25}
    assert sum(reference["confidence_share"].values()) == pytest.approx(1.0)
    assert reference["confidence_share"]["0.50"] == 0.25 and reference["confidence_share"]["0.70"] == 0.25
    assert reference["confidence_share"]["0.95"] == 0.25 and reference["confidence_share"]["0.99"] == 0.25
    assert reference["accuracy"] == 0.75
    assert reference["mean_confidence"] == pytest.approx((0.5 + 0.7311 + 0.9820 + 0.99995) / 4, abs=1e-3)
    assert reference_behaviour(logits, ["a", "b"], None)["accuracy"] is None


def test_the_calibration_per_bin_is_how_often_such_answers_were_right_and_never_falls_with_confidence() -> None:
    from tuneship.exporter.quality import bin_accuracy

    rng = np.random.default_rng(0)
    top = rng.uniform(0.5, 1.0, 4000)
    correct = rng.uniform(0.0, 1.0, 4000) < (top - 0.1)  # a model right 10 points less often than it is sure
    table = bin_accuracy(top, correct)
    assert list(table) == bin_names()
    values = list(table.values())
    assert values == sorted(values) and all(0.0 <= v <= 1.0 for v in values)
    assert table["0.80"] == pytest.approx(0.85 - 0.1, abs=0.05) and table["0.95"] == pytest.approx(0.87, abs=0.05)
    # CBPE: the estimate on held-out answers is their accuracy (the bins' shares times the bins' accuracy).
    bins = confidence_bins(top)
    estimate = sum((bins == i).mean() * table[name] for i, name in enumerate(bin_names()))
    assert estimate == pytest.approx(correct.mean(), abs=0.01)


def test_confidence_bins_close_the_last_bin_at_one() -> None:
    assert confidence_bins(np.array([0.0, 0.5, 0.59, 0.99, 1.0])).tolist() == [0, 1, 1, 7, 7]
    assert bin_names()[:2] == ["0.00", "0.50"]


def test_psi_is_zero_for_the_same_shares_and_grows_with_the_shift() -> None:
    assert psi({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0
    assert psi({"a": 0.8, "b": 0.2}, {"a": 0.5, "b": 0.5}) == pytest.approx(0.416, abs=1e-3)
    assert psi({"a": 1.0}, {"a": 0.5, "b": 0.5}) > psi({"a": 0.8, "b": 0.2}, {"a": 0.5, "b": 0.5})


@pytest.fixture(scope="module")
@costs("integration")
def server(tiny_repository: Path) -> Iterator[TritonServer]:
    """Its own server, not the shared one: the quality counters it reads must see only this module's traffic
    (counts reach the endpoint with a later request, so another module's could arrive inside a test's delta)."""
    with running_server(tiny_repository) as running:
        yield running


def _samples(server: TritonServer, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The metric's samples for the `tiny` pipeline, keyed by their labels other than model."""
    raw = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    samples = {}
    for line in raw.splitlines():
        if not line.startswith(name + "{"):
            continue
        labels_text, value = line[len(name) + 1:].rsplit("} ", 1)
        labels = dict(part.split("=", 1) for part in labels_text.split(","))
        labels = {k: v.strip('"') for k, v in labels.items()}
        if labels.pop("model") == "tiny":
            samples[tuple(sorted(labels.items()))] = float(value)
    return samples


def _total(server: TritonServer) -> float:
    return sum(_samples(server, "tuneship_predictions_total").values())


def _published(server: TritonServer, count: float) -> float:
    """The predictions counted once at least `count` are: counts reach the endpoint from a timer within
    quality_flush_s of the request that made them, so no later request is needed."""
    wait_for(lambda: _total(server) >= count, f"{count:g} predictions published")
    return _total(server)


def _settle(server: TritonServer) -> float:
    """The predictions counted once everything sent before is published: one more text's count arrives with (or
    after) every earlier pending count, since a flush sends all that is pending."""
    before = _total(server)
    with TritonClient(server.grpc_url) as client:
        TextClassifier(client, "tiny").classify(["settle the counts"])
    return _published(server, before + 1)


def _latest(repository: Path) -> Path:
    return max((p for p in (repository / "tiny_postprocess").iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


@pytest.mark.integration
def test_each_version_carries_its_reference_and_serves_it_as_gauges(server: TritonServer,
                                                                    tiny_repository: Path) -> None:
    folder = _latest(tiny_repository)
    reference = json.loads((folder / "reference.json").read_text())
    assert reference["samples"] == 60 and set(reference["label_share"]) == {"negative", "positive"}
    assert 0.0 <= reference["accuracy"] <= 1.0 and sum(reference["label_share"].values()) == pytest.approx(1.0)
    version = folder.name
    shares = _samples(server, "tuneship_reference_label_share")
    for label, share in reference["label_share"].items():
        assert shares[(("label", label), ("version", version))] == pytest.approx(share, abs=1e-6)
    bins = _samples(server, "tuneship_reference_confidence_share")
    assert sum(bins.values()) == pytest.approx(1.0, abs=1e-4)
    assert _samples(server, "tuneship_reference_mean_confidence")[(("version", version),)] == pytest.approx(
        reference["mean_confidence"], abs=1e-6)
    calibrated = _samples(server, "tuneship_reference_bin_accuracy")  # the estimate's calibration, per bin
    assert set(reference["bin_accuracy"]) == set(bin_names())
    for name, value in reference["bin_accuracy"].items():
        assert calibrated[(("bin", name), ("version", version))] == pytest.approx(value, abs=1e-6)


@pytest.mark.integration
def test_served_predictions_are_counted_by_label_and_confidence(server: TritonServer) -> None:
    _settle(server)
    before_labels = _samples(server, "tuneship_predictions_total")
    before_bins = _samples(server, "tuneship_prediction_confidence_total")
    before_sum = sum(_samples(server, "tuneship_prediction_confidence_sum").values())
    texts = [f"a {word} film, truly {word}" for word in ("great", "awful", "fine", "dull", "lovely")] * 4
    with TritonClient(server.grpc_url) as client:
        classifier = TextClassifier(client, "tiny", batch_size=3)
        predictions = classifier.classify(texts)
        predictions += classifier.classify(["one more"])
    texts.append("one more")
    _published(server, sum(before_labels.values()) + len(texts))  # at most once a second (quality_flush_s)
    after_labels = _samples(server, "tuneship_predictions_total")
    counted = {dict(k)["label"]: v - before_labels.get(k, 0.0) for k, v in after_labels.items()}
    expected = {label: sum(p.label == label for p in predictions) for label in ("negative", "positive")}
    assert counted == expected
    after_bins = _samples(server, "tuneship_prediction_confidence_total")
    assert sum(after_bins.values()) - sum(before_bins.values()) == len(texts)
    tops = [p.score for p in predictions]
    assert sum(_samples(server, "tuneship_prediction_confidence_sum").values()) - before_sum == pytest.approx(
        sum(tops), abs=1e-3)


@pytest.mark.integration
def test_a_bursts_counts_are_published_when_traffic_stops(server: TritonServer) -> None:
    """40 reviews one after another, then nothing: the counts reach the endpoint within quality_flush_s (1 s) of
    the last request, without waiting for a later one to carry them."""
    before = _settle(server)
    with TritonClient(server.grpc_url) as client:
        classifier = TextClassifier(client, "tiny")
        for index in range(40):
            classifier.classify([f"review number {index}: a gripping film"])
    assert _published(server, before + 40) == before + 40  # from the flush timer: nothing was sent after them


@pytest.mark.integration
def test_refused_and_truncated_texts_are_counted(server: TritonServer) -> None:
    def count(name: str, **match: str) -> float:
        return sum(v for k, v in _samples(server, name).items() if all(dict(k).get(a) == b for a, b in match.items()))

    empty, cut = count("tuneship_texts_refused_total", reason="empty"), count("tuneship_texts_truncated_total")
    with TritonClient(server.grpc_url) as client:
        with pytest.raises(TritonError, match="empty"):
            client.infer("tiny", {"TEXT": np.array([[b"   "]], dtype=np.object_)})
        TextClassifier(client, "tiny").classify([" ".join(["long"] * 200)])
        TextClassifier(client, "tiny").classify(["short"])
    wait_for(lambda: count("tuneship_texts_refused_total", reason="empty") == empty + 1, "the empty text counted")
    wait_for(lambda: count("tuneship_texts_truncated_total") == cut + 1, "the long text counted as truncated")
    _settle(server)  # and nothing more: the short text was not truncated
    assert count("tuneship_texts_refused_total", reason="empty") == empty + 1
    assert count("tuneship_texts_truncated_total") == cut + 1


@pytest.mark.integration
def test_the_client_logs_answered_texts_for_feedback_when_asked(server: TritonServer, tmp_path: Path) -> None:
    from tuneship.monitor import FeedbackStore, PredictionLog

    store = FeedbackStore(str(tmp_path / "feedback.db"))
    texts = ["a superb film", "a dreadful film", "fine"]
    with TritonClient(server.grpc_url) as client:
        predictions = TextClassifier(client, "tiny", batch_size=2, log=PredictionLog(store, redact=True)).classify(
            texts)
    store.import_labels("tiny", texts, [p.label for p in predictions])
    rows = store.labelled("tiny", predicted_only=True)
    assert len(rows) == 3 and all(r.text is None and r.version == _latest_version(server) for r in rows)
    assert sorted(r.predicted_label or "" for r in rows) == sorted(p.label for p in predictions)


class _Broken:
    def record(self, *args: object) -> None:
        raise OSError("disk full")


@pytest.mark.integration
def test_a_broken_prediction_log_never_fails_the_classification(server: TritonServer) -> None:
    with TritonClient(server.grpc_url) as client, pytest.warns(RuntimeWarning, match="disk full"):
        predictions = TextClassifier(client, "tiny", log=_Broken()).classify(["a superb film"])
    assert predictions[0].label in ("negative", "positive")


def _latest_version(server: TritonServer) -> str:
    with TritonClient(server.grpc_url) as client:
        return str(client.infer("tiny", {"TEXT": np.array([[b"probe"]], dtype=np.object_)}).version)


def test_the_tokenizer_pads_to_buckets_so_separate_requests_share_a_shape(server: TritonServer) -> None:
    """Texts of 3 and 9 tokens tokenized in separate calls both come out 16 tokens long (the exported default),
    the shape the model's batcher needs to merge them; the answers do not depend on it."""
    with TritonClient(server.grpc_url) as client:
        shapes = []
        for text in ("good film", "a long and winding but good enough film"):
            batch = np.array([[text.encode()]], dtype=np.object_)
            shapes.append(client.infer("tiny_tokenizer", {"TEXT": batch})["input_ids"].shape)
        assert shapes == [(1, 16), (1, 16)]
        alone = TextClassifier(client, "tiny").classify(["good film"])[0]
        together = TextClassifier(client, "tiny").classify(["good film", "a long and winding but good enough film"])[0]
    assert alone.label == together.label and alone.score == pytest.approx(together.score, abs=1e-5)


def test_liveness_probes_are_answered_but_not_counted_as_predictions(server: TritonServer,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from tuneship.cli import main

    before = _settle(server)
    for _ in range(3):
        assert main(["health", "--url", server.grpc_url, "--model", "tiny"]) == 0
    with TritonClient(server.grpc_url) as client:
        TextClassifier(client, "tiny").classify(["one real text"])
    capsys.readouterr()
    # Had the probes been counted, their counts would be published with the real text's or before it.
    assert _published(server, before + 1) - before == 1  # the real text only: three probes answered, none counted
