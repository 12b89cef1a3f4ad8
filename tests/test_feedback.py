"""The feedback store, live accuracy and `tuneship feedback`: predictions logged, labels matched later."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from tuneship.cli import main
from tuneship.deploy import free_port
from tuneship.monitor import FeedbackStore, PredictionLog
from tuneship.monitor.live import serve
from tuneship.monitor.store import text_hash, window_quality


def test_the_same_store_code_works_on_a_real_postgresql(postgres_url: str) -> None:
    with FeedbackStore(postgres_url) as store:
        _log(store, "7")
        result = store.import_labels("sentiment", ["good film", "bad film", "unseen"], ["pos", "pos", "neg"])
        assert (result.matched, result.added) == (2, 1)
        quality = window_quality(store.labelled("sentiment", predicted_only=True))
        assert quality[("sentiment", "7")]["accuracy"] == 0.5
    with FeedbackStore(postgres_url) as reopened:  # another replica sees the same rows
        assert sum(row["labelled"] for row in reopened.counts()) == 3


def _log(store: FeedbackStore, version: str = "1") -> None:
    store.log_predictions("sentiment", version, ["good film", "bad film", "odd film"], ["pos", "neg", "pos"],
                          [{"pos": 0.9, "neg": 0.1}, {"pos": 0.2, "neg": 0.8}, {"pos": 0.6, "neg": 0.4}])


def test_labels_find_their_predictions_by_text_and_the_rest_are_kept(tmp_path: Path) -> None:
    with FeedbackStore(str(tmp_path / "feedback.db")) as store:
        _log(store)
        first = store.import_labels("sentiment", ["good film", "odd film", "new film"], ["pos", "neg", "neg"])
        assert (first.matched, first.added, first.unchanged) == (2, 1, 0)
        again = store.import_labels("sentiment", ["good film", "new film"], ["pos", "neg"])
        assert (again.matched, again.added, again.unchanged) == (0, 0, 2)
        rows = store.labelled("sentiment")
        assert sorted((r.text, r.true_label, r.predicted_label) for r in rows) == [
            ("good film", "pos", "pos"), ("new film", "neg", None), ("odd film", "neg", "pos")]
        quality = window_quality(store.labelled(predicted_only=True))
        assert quality[("sentiment", "1")]["accuracy"] == 0.5
        # macro-F1 over pos (tp 1, fp 1: 0.667) and neg (tp 0, fn 1: 0)
        assert quality[("sentiment", "1")]["macro_f1"] == pytest.approx(1 / 3)
        assert store.counts() == [{"model": "sentiment", "version": None, "predictions": 0, "labelled": 1},
                                  {"model": "sentiment", "version": "1", "predictions": 3, "labelled": 2}]


def test_redacted_predictions_keep_only_a_hash_and_still_get_labels(tmp_path: Path) -> None:
    with FeedbackStore(str(tmp_path / "feedback.db")) as store:
        store.log_predictions("m", "2", ["secret text"], ["pos"], [{"pos": 1.0}], redact=True)
        assert store.import_labels("m", ["secret text"], ["neg"]).matched == 1
        (row,) = store.labelled("m")
        assert row.text is None and row.text_hash == text_hash("secret text") and row.true_label == "neg"
    with store.engine.connect() as connection:
        assert "secret" not in json.dumps([list(r) for r in connection.execute(store.table.select())])


def test_the_prediction_log_samples_and_checks_its_rate(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        PredictionLog(str(tmp_path / "x.db"), sample_rate=1.5)
    log = PredictionLog(str(tmp_path / "feedback.db"), sample_rate=0.25, seed=1)
    texts = [f"text {i}" for i in range(400)]
    log.record("m", "1", texts, ["pos"] * 400, [{"pos": 1.0}] * 400)
    logged = log.store.counts()[0]["predictions"]
    assert 60 < logged < 140
    PredictionLog(log.store, sample_rate=0.0).record("m", "1", texts, ["pos"] * 400, [{"pos": 1.0}] * 400)
    assert log.store.counts()[0]["predictions"] == logged


def test_live_accuracy_is_served_per_version_for_prometheus(tmp_path: Path) -> None:
    with FeedbackStore(str(tmp_path / "feedback.db")) as store:
        _log(store, "1")
        store.log_predictions("sentiment", "2", ["good film"], ["neg"], [{"pos": 0.4, "neg": 0.6}])
        store.import_labels("sentiment", ["good film", "bad film", "good film"], ["pos", "neg", "pos"])
        port = free_port()
        server = serve(store, port, window_s=3600)
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        finally:
            server.shutdown()
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
              if line.startswith("tuneship_live_")}
    assert values['tuneship_live_accuracy{model="sentiment",version="2"}'] == 0.0
    assert values['tuneship_live_accuracy{model="sentiment",version="1"}'] == 1.0
    assert values['tuneship_live_labelled{model="sentiment",version="1"}'] == 2.0


def test_feedback_commands_import_export_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "feedback.db")
    with FeedbackStore(store) as opened:
        _log(opened)
    labels = tmp_path / "labels.csv"
    labels.write_text("text,label\ngood film,pos\nbad film,pos\nunseen film,neg\n", encoding="utf-8")
    assert main(["feedback", "import", str(labels), "--model", "sentiment", "--store", store]) == 0
    assert "2 matched a logged prediction, 1 new examples" in capsys.readouterr().out
    out = tmp_path / "data" / "labelled.jsonl"
    assert main(["feedback", "export", "--model", "sentiment", "--out", str(out), "--store", store]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted((r["text"], r["label"]) for r in rows) == [("bad film", "pos"), ("good film", "pos"),
                                                             ("unseen film", "neg")]
    assert not [p for p in out.parent.iterdir() if p.name != out.name]  # no temporary file left behind
    capsys.readouterr()
    assert main(["feedback", "stats", "--store", store]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["model", "version", "logged", "labelled", "accuracy", "macro-F1"]
    assert table[2].split()[:5] == ["sentiment", "1", "3", "2", "0.500"]


def test_bad_feedback_files_name_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("text,label\ngood film,pos\nbad film,\n", encoding="utf-8")
    store = tmp_path / "feedback.db"
    assert main(["feedback", "import", str(labels), "--model", "m", "--store", str(store)]) == 2
    assert f"{labels}:3" in capsys.readouterr().err
    with FeedbackStore(str(store)) as opened:
        assert opened.counts() == []  # nothing written
