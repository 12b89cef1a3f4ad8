"""`tuneship feedback queue` and Label Studio's formats: the picks follow the policy (the random share present, the
data check's suspects, texts unlike the training data, then the least confident first), and the queue goes out as
Label Studio tasks and comes back from its export into the store; bad exports are one line naming the task."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from tuneship.cli import main
from tuneship.monitor import FeedbackStore
from tuneship.monitor.queue import QueueOptions, pick
from tuneship.monitor.store import Served

LABELS = ["negative", "positive"]


def _served(count: int, seed: int = 3) -> list[Served]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        positive = rng.uniform(0.0, 1.0)
        probabilities = {"negative": 1.0 - positive, "positive": positive}
        rows.append(Served(i + 1, "1", f"a review number {i} about a film", max(probabilities, key=probabilities.get),
                           probabilities, 1000.0 + i))
    return rows


def test_the_queue_takes_a_random_share_then_suspects_then_novel_then_the_least_confident() -> None:
    from tuneship.monitor.queue import Pick

    rows = _served(100)
    rows.append(Served(999, "1", "quantum chromodynamics lecture notes", "positive",
                       {"negative": 0.01, "positive": 0.99}, 5.0))  # sure of itself, and unlike any training text
    suspects = [Pick(text="a mislabelled training review", reason="suspect", source="train.csv:7", given="negative")]
    options = QueueOptions(model="m", output=Path("unused"), size=20, random_share=0.2, novel_share=0.05,
                           suspect_share=0.1)
    reference = [f"a review number {i} about a film" for i in range(50)]
    picks = pick(options, rows, suspects, reference)
    reasons = [p.reason for p in picks]
    assert len(picks) == 20 and len({p.text for p in picks}) == 20
    assert reasons.count("random") == 4 and reasons.count("suspect") == 1 and reasons.count("novel") == 1
    assert next(p for p in picks if p.reason == "novel").source == "prediction:999"
    rest = [p.confidence for p in picks if p.reason == "least_confident"]
    assert len(rest) == 14 and rest == sorted(rest)
    randoms = {p.text for p in picks if p.reason == "random"}
    unpicked = [r.confidence for r in rows if r.text not in {p.text for p in picks}]
    assert max(rest) <= min(unpicked)  # the least confident of what the random share left
    again = pick(options, rows, suspects, reference)
    assert {p.text for p in again if p.reason == "random"} == randoms  # seeded
    other = pick(QueueOptions(model="m", output=Path("unused"), size=20, seed=7), rows)
    assert {p.text for p in other if p.reason == "random"} != randoms


def _store_with_predictions(path: Path) -> Path:
    store_path = path / "feedback.db"
    rows = _served(30)
    with FeedbackStore(str(store_path)) as store:
        store.log_predictions("sentiment", "2", [r.text for r in rows], [r.predicted_label for r in rows],
                              [r.probabilities for r in rows])
    return store_path


def _annotate(tasks: list[dict[str, object]], label_of: dict[str, str]) -> list[dict[str, object]]:
    """What Label Studio's JSON export holds after people labelled the imported tasks."""
    exported = []
    for number, task in enumerate(tasks, start=1):
        data = task["data"]
        assert isinstance(data, dict)
        label = label_of.get(data["text"])
        annotations = [] if label is None else [
            {"id": number, "was_cancelled": True, "result": [], "updated_at": "2026-12-08T10:00:00Z"},
            {"id": 100 + number, "was_cancelled": False, "updated_at": "2026-12-08T11:00:00Z",
             "result": [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]}]
        exported.append({"id": 500 + number, "project": 3, "data": data, "annotations": annotations,
                         "predictions": task.get("predictions", [])})
    return exported


def test_the_queue_round_trips_through_label_studios_formats_into_the_store(tmp_path: Path) -> None:
    store = _store_with_predictions(tmp_path)
    output = tmp_path / "queue"
    assert main(["feedback", "queue", "--model", "sentiment", "--store", str(store), "--output", str(output),
                 "--size", "10"]) == 0
    tasks = json.loads((output / "tasks.json").read_text())
    assert len(tasks) == 10
    for task in tasks:
        prediction = task["predictions"][0]
        assert prediction["model_version"] == "sentiment/2" and 0.5 <= prediction["score"] <= 1.0
        assert prediction["result"][0]["value"]["choices"][0] in LABELS
        assert task["data"]["tuneship_model"] == "sentiment" and task["data"]["tuneship_reason"]
    config = (output / "label_config.xml").read_text()
    assert '<Choices name="label" toName="text"' in config and all(f'value="{c}"' in config for c in LABELS)
    with (output / "queue.csv").open() as handle:
        assert [row["text"] for row in csv.DictReader(handle)] == [t["data"]["text"] for t in tasks]

    texts = [t["data"]["text"] for t in tasks]
    label_of = {text: LABELS[i % 2] for i, text in enumerate(texts[:8])}  # two tasks nobody labelled
    export = tmp_path / "project-3-export.json"
    export.write_text(json.dumps(_annotate(tasks, label_of)))
    assert main(["feedback", "import", str(export), "--model", "sentiment", "--store", str(store)]) == 0
    with FeedbackStore(str(store)) as opened:
        labelled = {row.text: row.true_label for row in opened.labelled("sentiment")}
        assert labelled == label_of  # the latest annotation that was not cancelled, matched to its prediction
        assert len(opened.open_predictions("sentiment")) == 30 - 8
    minimal = tmp_path / "min.json"  # Label Studio's JSON-MIN export: the data fields and the chosen label
    minimal.write_text(json.dumps([{"id": 601, "text": texts[8], "label": "positive"}]))
    assert main(["feedback", "import", str(minimal), "--model", "sentiment", "--store", str(store)]) == 0
    with FeedbackStore(str(store)) as opened:
        assert {row.text: row.true_label for row in opened.labelled("sentiment")}[texts[8]] == "positive"


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t[1]["annotations"][1]["result"][0]["value"].update(choices=["neutral"]),
     "task 502 is labelled 'neutral', which sentiment does not answer (its labels: negative, positive)"),
    (lambda t: t[2]["data"].update(tuneship_model="spam-filter"),
     "task 503 was queued for model 'spam-filter', not 'sentiment': this is another project's export"),
    (lambda t: t[0]["data"].pop("text"), "task 501 has no data.text"),
])
def test_a_bad_label_studio_export_is_one_line_naming_the_task_and_nothing_is_imported(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: object, message: str) -> None:
    store = _store_with_predictions(tmp_path)
    assert main(["feedback", "queue", "--model", "sentiment", "--store", str(store), "--output",
                 str(tmp_path / "q"), "--size", "5"]) == 0
    tasks = json.loads((tmp_path / "q" / "tasks.json").read_text())
    exported = _annotate(tasks, {t["data"]["text"]: "positive" for t in tasks})
    edit(exported)  # type: ignore[operator]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(exported))
    capsys.readouterr()
    assert main(["feedback", "import", str(export), "--model", "sentiment", "--store", str(store)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    with FeedbackStore(str(store)) as opened:
        assert opened.labelled("sentiment") == []


def test_a_queue_of_a_model_with_no_prediction_log_is_refused(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    store = _store_with_predictions(tmp_path)
    output = tmp_path / "q"
    assert main(["feedback", "queue", "--model", "spam-filter", "--store", str(store), "--output", str(output)]) == 2
    assert "--model spam-filter: no prediction log" in capsys.readouterr().err
    assert not output.exists()
