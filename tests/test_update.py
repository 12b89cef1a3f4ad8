"""`tuneship update`: a served tiny classifier meets a new vocabulary, is retrained, gated and switched live."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_reviews, write_csv
from lanes import costs

from tuneship.cli import main
from tuneship.client import TextClassifier, TritonClient, TritonError
from tuneship.deploy import ServeOptions, TritonServer
from tuneship.monitor import FeedbackStore
from tuneship.monitor.update import UPDATES_FILE, UpdateError, UpdateOptions, run_update
from tuneship.repository import existing_versions, parse_pbtxt, to_pbtxt

pytestmark = pytest.mark.integration

# The new domain: words the served model never saw carry the sentiment.
NEW_POSITIVE = ["fire", "lit", "dope", "goated", "cool"]
NEW_NEGATIVE = ["meh", "trash", "cringe", "mid", "yikes"]
NEW_FILLER = ["lol", "tbh", "ngl", "this", "show", "episode", "honestly", "fr"]


def new_domain(count: int, seed: int) -> list[tuple[str, str]]:
    return synthetic_reviews(count, seed, NEW_POSITIVE, NEW_NEGATIVE, NEW_FILLER, words=(2, 5))


@pytest.fixture()
@costs("slow")
def repository(tiny_repository: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "repository"
    shutil.copytree(tiny_repository, copy)
    return copy


def test_a_better_candidate_is_published_live_with_no_failed_request(repository: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "new.csv", new_domain(240, seed=5))
    parent = existing_versions(repository / "tiny_model")[-1]
    # Settings a tune (or a person) left in the served configs: the published candidate keeps them.
    tuned = parse_pbtxt((repository / "tiny_model" / "config.pbtxt").read_text())
    tuned.dynamic_batching.max_queue_delay_microseconds = 1234
    tuned.parameters["intra_op_thread_count"].string_value = "1"
    (repository / "tiny_model" / "config.pbtxt").write_text(to_pbtxt(tuned))
    failures: list[str] = []
    answered = [0]
    stop = threading.Event()
    with TritonServer(ServeOptions(model_repository=repository, grpc_port=0, http_port=0, metrics_port=0)) as server:
        def load() -> None:
            with TritonClient(server.grpc_url) as client:
                classifier = TextClassifier(client, "tiny", batch_size=2)
                while not stop.is_set():
                    try:
                        classifier.classify(["the film was great", "lol this show is trash"])
                        answered[0] += 1
                    except TritonError as error:
                        failures.append(str(error))
                    stop.wait(0.02)  # steady traffic through the update, not a loop that starves its training

        worker = threading.Thread(target=load)
        worker.start()
        try:
            report = run_update(UpdateOptions(name="tiny", new_data=data, output=tmp_path / "candidate",
                                              repository=repository, url=server.grpc_url,
                                              max_original_drop_points=5.0))
        finally:
            stop.set()
            worker.join()
        with TritonClient(server.grpc_url) as client:
            served = client.infer("tiny", {"TEXT": np.array([[b"fire episode"]], dtype=np.object_)})
    assert report.passed, report.reason
    new, original = report.rows
    assert new["candidate"] > new["serving"] and new["count"] == 72
    assert original["count"] == 60 and original["candidate"] >= original["serving"] - 0.05
    assert report.replayed == report.new_train == 167  # 239 distinct rows: 30% held out
    assert report.published_versions == {m: parent + 1 for m in ("tiny_model", "tiny_tokenizer",
                                                                 "tiny_postprocess", "tiny")}
    assert served.version == str(parent + 1)
    kept = parse_pbtxt((repository / "tiny_model" / "config.pbtxt").read_text())
    assert kept.dynamic_batching.max_queue_delay_microseconds == 1234
    assert kept.parameters["intra_op_thread_count"].string_value == "1"
    assert not failures and answered[0] > 0, failures[:3]
    records = [json.loads(line) for line in (repository / "tiny" / UPDATES_FILE).read_text().splitlines()]
    assert len(records) == 1 and records[0]["parent_version"] == parent and records[0]["passed"]
    assert records[0]["published_versions"]["tiny"] == parent + 1
    assert records[0]["data_fingerprint"].startswith("sha256:")
    assert json.loads((tmp_path / "candidate" / "update_report.json").read_text())["passed"]
    # The published files are the gated ones, with the candidate's reference behaviour.
    assert (repository / "tiny_postprocess" / str(parent + 1) / "reference.json").is_file()
    # One command brings the parent back, as the next version, with the parent's files.
    assert main(["rollback", "--model", "tiny", "--repository", str(repository)]) == 0
    assert existing_versions(repository / "tiny_model")[-1] == parent + 2
    assert ((repository / "tiny_model" / str(parent + 2) / "model.onnx").read_bytes()
            == (repository / "tiny_model" / str(parent) / "model.onnx").read_bytes())
    last = json.loads((repository / "tiny" / UPDATES_FILE).read_text().splitlines()[-1])
    assert last["rollback"] and last["to_version"] == parent


def test_a_candidate_that_does_not_clear_the_margin_is_not_published(repository: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    data = write_csv(tmp_path / "new.csv", new_domain(120, seed=6))
    before = {m: existing_versions(repository / m) for m in ("tiny", "tiny_model")}
    store = FeedbackStore(str(tmp_path / "feedback.db"))
    store.log_predictions("tiny", "1", ["the film was great", "the plot was awful"], ["positive", "negative"],
                          [{"positive": 0.9, "negative": 0.1}, {"positive": 0.1, "negative": 0.9}])
    code = main(["update", str(data), "--model", "tiny", "--repository", str(repository), "--output",
                 str(tmp_path / "candidate"), "--margin", "100", "--epochs", "1",
                 "--shadow-store", str(tmp_path / "feedback.db")])
    output = capsys.readouterr().out
    assert code == 1
    assert "not published: new data" in output and "needs +100" in output
    assert "of the 2 latest logged texts" in output
    assert {m: existing_versions(repository / m) for m in before} == before
    (record,) = [json.loads(line) for line in (repository / "tiny" / UPDATES_FILE).read_text().splitlines()]
    assert not record["passed"] and record["published_versions"] == {}


def test_new_labels_the_model_does_not_have_are_refused_before_training(repository: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "new.csv", [("a fine show", "neutral"), ("lol fire", "positive")] * 5)
    with pytest.raises(UpdateError, match=r"labels \['neutral'\] are not the model's labels"):
        run_update(UpdateOptions(name="tiny", new_data=data, output=tmp_path / "candidate", repository=repository))
    assert not (tmp_path / "candidate").exists()
    from tuneship.deploy import free_port

    good = write_csv(tmp_path / "good.csv", new_domain(40, seed=1))
    with pytest.raises(UpdateError, match="start the server"):  # found before any training
        run_update(UpdateOptions(name="tiny", new_data=good, output=tmp_path / "candidate", repository=repository,
                                 url=f"127.0.0.1:{free_port()}"))
    assert not (tmp_path / "candidate").exists()
    serving = Path(json.loads((repository / "tiny" / "export_report.json").read_text())["checkpoint"])
    with pytest.raises(UpdateError, match="is the serving checkpoint itself"):
        run_update(UpdateOptions(name="tiny", new_data=data, output=serving, repository=repository))
    assert (serving / "tuneship.json").is_file()


@pytest.mark.parametrize(("serving", "candidate", "points"), [(0.865, 0.855, -1.0), (0.795, 0.806, 1.1),
                                                             (0.6833333333, 0.8166666667, 13.333333)])
def test_gate_changes_are_points_without_float_noise(serving: float, candidate: float, points: float) -> None:
    """A drop of exactly the allowance passes: 0.855 - 0.865 in floats is -1.0000000000000009 points."""
    from tuneship.monitor.update import GateRow

    change = GateRow("original eval", 200, serving, candidate).change_points
    assert change == points
