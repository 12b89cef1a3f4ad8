"""`tuneship update` of an instruct model: corrected answers in, continued tuning, a gate on both versions as served,
and a live switch with no failed request."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
from genai import corrections
from lanes import costs

from tuneship.client import Generator, TritonClient, TritonError
from tuneship.deploy import ServeOptions, TritonServer
from tuneship.monitor.update import UPDATES_FILE, UpdateError, UpdateOptions, run_update
from tuneship.repository import existing_versions

pytestmark = pytest.mark.integration


@pytest.fixture()
@costs("slow")
def repository(generator_repository: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "repository"
    shutil.copytree(generator_repository, copy)
    return copy


def test_an_instruct_update_publishes_only_a_better_candidate_live(repository: Path, instruct_checkpoint: Path,
                                                                    tmp_path: Path) -> None:
    parent = existing_versions(repository / "chat")[-1]
    failures: list[str] = []
    answered = [0]
    stop = threading.Event()
    with TritonServer(ServeOptions(model_repository=repository, grpc_port=0, http_port=0, metrics_port=0)) as server:
        def load() -> None:
            with TritonClient(server.grpc_url) as client:
                generator = Generator(client, "chat")
                while not stop.is_set():
                    try:
                        assert generator.generate("Is this review positive or negative?\n\nA fine film.",
                                                  max_tokens=4).finish_reason in ("stop", "length")
                        answered[0] += 1
                    except TritonError as error:
                        failures.append(str(error))
                    stop.wait(0.05)  # steady traffic through the update, not a loop that starves its training

        worker = threading.Thread(target=load)
        worker.start()
        try:
            # Right answers to review prompts: the tiny model (which answers none of its eval prompts right) learns
            # to answer, is published and served live while requests keep coming.
            better = run_update(UpdateOptions(
                name="chat", new_data=corrections(tmp_path / "right.jsonl", instruct_checkpoint, flip=False),
                output=tmp_path / "better", repository=repository, url=server.grpc_url, margin_points=10.0,
                max_original_drop_points=0.0, epochs=2.0))
        finally:
            stop.set()
            worker.join()
        with TritonClient(server.grpc_url) as client:
            served = Generator(client, "chat").generate("Is this review positive or negative?\n\nDull.", max_tokens=2)
            status = client.get_model_metadata("chat")
        # Then wrong answers: that candidate loses on what the new serving version was measured on (the right
        # answers held out above, now its original eval prompts) and is not published.
        worse = run_update(UpdateOptions(
            name="chat", new_data=corrections(tmp_path / "wrong.jsonl", instruct_checkpoint, flip=True),
            output=tmp_path / "worse", repository=repository, url=server.grpc_url, margin_points=0.0,
            max_original_drop_points=0.0, epochs=2.0))
    assert better.passed, better.reason
    gained, kept = better.rows
    assert gained["candidate"] >= gained["serving"] + 0.1 and kept["candidate"] >= kept["serving"], better.rows
    assert better.published_versions == {"chat": parent + 1}
    assert str(parent + 1) in status["versions"] and served.tokens >= 1
    assert not failures and answered[0] > 0, failures[:3]
    assert better.new_train + better.new_holdout == 40 and better.replayed == better.new_train
    assert not worse.passed, worse.reason
    assert worse.parent_version == parent + 1 and worse.rows[1]["candidate"] < worse.rows[1]["serving"], worse.rows
    assert existing_versions(repository / "chat")[-1] == parent + 1  # nothing published
    published = repository / "chat" / str(parent + 1)
    assert (published / "reference.json").is_file() and (published / "labels.txt").read_text().split() == [
        "negative", "positive"]
    source = json.loads((published / "tuneship_source.json").read_text())
    assert source["checkpoint"] == str(tmp_path / "better")
    records = [json.loads(line) for line in (repository / "chat" / UPDATES_FILE).read_text().splitlines()]
    assert [r["passed"] for r in records] == [True, False] and records[0]["parent_version"] == parent
    report = json.loads((repository / "chat" / "export_report.json").read_text())
    assert report["checkpoint"] == str((tmp_path / "better").resolve()) and report["versions"] == {"chat": parent + 1}


def test_an_instruct_update_refuses_answers_outside_the_label_set(repository: Path, tmp_path: Path) -> None:
    data = tmp_path / "odd.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "A review?"},
                                             {"role": "assistant", "content": "positive"}]}) + "\n"
                    + json.dumps({"messages": [{"role": "user", "content": "Another?"},
                                               {"role": "assistant", "content": "It is great"}]}) + "\n")
    with pytest.raises(UpdateError, match=r"odd.jsonl:2: the answer 'It is great' is not one of the model's answers"):
        run_update(UpdateOptions(name="chat", new_data=data, output=tmp_path / "candidate", repository=repository))
    with pytest.raises(UpdateError, match="conversations"):
        run_update(UpdateOptions(name="chat", new_data=tmp_path / "odd.csv", output=tmp_path / "c",
                                 repository=repository))
