"""Generated answers in the feedback store: logged by the client, rated and corrected later, and served as live
quality gauges."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import pytest

from tuneship.cli import main
from tuneship.client import AsyncGenerator, AsyncTritonClient, GenerationRecord, Generator, TritonClient
from tuneship.deploy import TritonServer, free_port
from tuneship.monitor import FeedbackStore, PredictionLog
from tuneship.monitor.generations import answer_quality, feedback_from_record, read_answer_feedback
from tuneship.monitor.live import serve

QUESTION = "Is this review positive or negative?\n\nA gripping film."


def _record(prompt: str | list[dict[str, str]], answer: str, version: str = "1",
            adapter: str | None = None) -> GenerationRecord:
    return GenerationRecord("chat", version, prompt, answer, "stop", 2, adapter, {"max_tokens": 8})


def test_feedback_finds_its_generation_by_id_or_by_prompt(tmp_path: Path) -> None:
    with FeedbackStore(str(tmp_path / "feedback.db")) as store:
        log = PredictionLog(store)
        first = log.record_generation(_record(QUESTION, "Positive."))
        log.record_generation(_record("Another review?", "negative"))
        # The same question as chat messages is the same prompt (a text prompt is one user turn).
        log.record_generation(_record([{"role": "user", "content": "Third?"}], "positive"))
        assert first is not None
        items = [feedback_from_record({"id": first, "rating": "good"}, "f:1"),
                 feedback_from_record({"prompt": "Another review?", "correction": "positive"}, "f:2"),
                 feedback_from_record({"messages": [{"role": "user", "content": "Third?"}], "rating": "down",
                                       "correction": "Negative!"}, "f:3"),
                 feedback_from_record({"prompt": "Never asked", "correction": "negative"}, "f:4"),
                 feedback_from_record({"prompt": "Never asked either", "rating": 1}, "f:5")]
        result = store.generations.import_feedback("chat", items)
        assert (result.matched, result.added, result.unmatched, result.unchanged) == (3, 1, ["f:5"], 0)
        again = store.generations.import_feedback("chat", items[:1])
        assert (again.matched, again.unchanged) == (0, 1)
        reviewed = {(r.prompt or [{}])[-1].get("content"): r for r in store.generations.reviewed("chat")}
        assert reviewed[QUESTION].right_answer == "Positive." and reviewed[QUESTION].exact is True
        assert reviewed["Another review?"].exact is False and reviewed["Another review?"].rating is None
        assert reviewed["Third?"].exact is False and reviewed["Third?"].right_answer == "Negative!"
        assert reviewed["Never asked"].exact is None and reviewed["Never asked"].answer is None
        figures = answer_quality(store.generations.reviewed())
        assert figures == {("chat", "1", ""): {"reviewed": 3.0, "rated": 2.0, "corrected": 2.0, "good_share": 0.5,
                                               "exact_match": pytest.approx(1 / 3)}}


def test_a_correction_matching_the_answer_word_for_word_is_an_exact_match(tmp_path: Path) -> None:
    with FeedbackStore(str(tmp_path / "feedback.db")) as store:
        log_id = PredictionLog(store).record_generation(_record(QUESTION, "Positive."))
        store.generations.import_feedback("chat", [feedback_from_record({"id": log_id, "correction": "positive"},
                                                                        "f:1")])
        (row,) = store.generations.reviewed()
        assert row.exact is True


def test_redacted_generations_keep_only_hashes_and_still_get_feedback(tmp_path: Path) -> None:
    with FeedbackStore(str(tmp_path / "feedback.db")) as store:
        PredictionLog(store, redact=True).record_generation(_record("my secret question", "secret answer"))
        result = store.generations.import_feedback("chat", [feedback_from_record(
            {"prompt": "my secret question", "correction": "Secret answer!"}, "f:1")])
        assert result.matched == 1
        (row,) = store.generations.reviewed()
        assert row.prompt is None and row.answer is None and row.exact is True
        with store.engine.connect() as connection:
            stored = json.dumps([list(r) for r in connection.execute(store.generations.table.select())])
        assert "my secret question" not in stored and "secret answer\"" not in stored


def test_the_generation_log_samples(tmp_path: Path) -> None:
    log = PredictionLog(str(tmp_path / "feedback.db"), sample_rate=0.25, seed=3)
    ids = [log.record_generation(_record(f"question {i}", "positive")) for i in range(400)]
    logged = sum(i is not None for i in ids)
    assert 60 < logged < 140
    assert log.store.generations.counts()[0]["generations"] == logged


@pytest.mark.parametrize(("content", "suffix", "message"), [
    ('{"id": "abc", "rating": "meh"}\n', ".jsonl", ":1: rating 'meh' is not a rating"),
    ('{"rating": "good"}\n', ".jsonl", ":1: give the generation's id"),
    ('{"prompt": "q", "rating": "good"}\n{"prompt": "q"}\n', ".jsonl", ":2: no feedback"),
    ('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "rating": 1}\n',
     ".jsonl", ":1: messages end with an assistant turn"),
    ('{"prompt": "q", "correction": 3}\n', ".jsonl", ":1: correction must be text"),
    ("prompt,rating\nfine,good\nbad,maybe\n", ".csv", ":3: rating 'maybe' is not a rating"),
    ('{"prompt": "q", "rating": "good"\n', ".jsonl", ":1: not valid JSON"),
])
def test_bad_rating_files_name_file_and_line(tmp_path: Path, content: str, suffix: str, message: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / f"ratings{suffix}"
    path.write_text(content, encoding="utf-8")
    store = tmp_path / "feedback.db"
    assert main(["feedback", "import", str(path), "--model", "chat", "--store", str(store)]) == 2
    assert f"{path}{message}" in capsys.readouterr().err
    with FeedbackStore(str(store)) as opened:
        assert opened.generations.reviewed() == []  # nothing written


def test_rating_commands_import_export_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "feedback.db")
    with FeedbackStore(store) as opened:
        log = PredictionLog(opened)
        ids = [log.record_generation(_record(f"review {i}?", "positive")) for i in range(3)]
    ratings = tmp_path / "ratings.jsonl"
    ratings.write_text(f'{{"id": "{ids[0]}", "rating": "good"}}\n'
                       f'{{"id": "{ids[1]}", "rating": "bad", "correction": "negative"}}\n'
                       '{"prompt": "new review?", "correction": "negative"}\n', encoding="utf-8")
    assert main(["feedback", "import", str(ratings), "--model", "chat", "--store", store]) == 0
    assert "2 matched a logged generation, 1 corrections kept as new examples" in capsys.readouterr().out
    corrections = tmp_path / "ratings.csv"
    corrections.write_text("prompt,rating\nreview 2?,good\n", encoding="utf-8")
    assert main(["feedback", "import", str(corrections), "--model", "chat", "--store", store]) == 0
    out = tmp_path / "answers.jsonl"
    assert main(["feedback", "export", "--model", "chat", "--out", str(out), "--store", store]) == 0
    conversations = [json.loads(line)["messages"] for line in out.read_text().splitlines()]
    assert sorted((c[0]["content"], c[1]["content"]) for c in conversations) == [
        ("new review?", "negative"), ("review 0?", "positive"), ("review 1?", "negative"), ("review 2?", "positive")]
    capsys.readouterr()
    assert main(["feedback", "stats", "--store", store]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["generator", "version", "logged", "reviewed", "good", "exact"]
    # The correction for a prompt never logged is an example of no version.
    assert table[1].split() == ["chat", "-", "0", "1", "-", "-"]
    assert table[2].split() == ["chat", "1", "3", "3", "0.667", "0.667"]


def test_live_answer_quality_is_served_per_version_and_adapter(tmp_path: Path) -> None:
    with FeedbackStore(str(tmp_path / "feedback.db")) as store:
        log = PredictionLog(store)
        ids = [log.record_generation(_record("q1", "positive")), log.record_generation(_record("q2", "positive")),
               log.record_generation(_record("q3", "ok", version="2", adapter="support"))]
        store.generations.import_feedback("chat", [
            feedback_from_record({"id": ids[0], "rating": "good"}, "f:1"),
            feedback_from_record({"id": ids[1], "correction": "negative"}, "f:2"),
            feedback_from_record({"id": ids[2], "rating": "bad"}, "f:3")])
        port = free_port()
        server = serve(store, port, window_s=3600)
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        finally:
            server.shutdown()
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
              if line.startswith("tuneship_live_answer")}
    assert values == {
        'tuneship_live_answer_good_share{adapter="",model="chat",version="1"}': 1.0,
        'tuneship_live_answer_exact_match{adapter="",model="chat",version="1"}': 0.5,
        'tuneship_live_answers_reviewed{adapter="",model="chat",version="1"}': 2.0,
        'tuneship_live_answers_rated{adapter="",model="chat",version="1"}': 1.0,
        'tuneship_live_answer_good_share{adapter="support",model="chat",version="2"}': 0.0,
        'tuneship_live_answer_exact_match{adapter="support",model="chat",version="2"}': 0.0,
        'tuneship_live_answers_reviewed{adapter="support",model="chat",version="2"}': 1.0,
        'tuneship_live_answers_rated{adapter="support",model="chat",version="2"}': 1.0}


def test_a_served_generators_answers_are_logged_with_their_version_and_parameters(
        generator_server: TritonServer, tmp_path: Path) -> None:
    store = FeedbackStore(str(tmp_path / "feedback.db"))
    log = PredictionLog(store)
    with TritonClient(generator_server.grpc_url) as client:
        generator = Generator(client, "chat", log=log)
        whole = generator.generate(QUESTION, max_tokens=4)
        stream = generator.stream([{"role": "user", "content": QUESTION}], max_tokens=3, temperature=0.0)
        streamed = "".join(stream)
        cancelled = generator.stream(QUESTION, max_tokens=2000, min_tokens=2000)
        next(iter(cancelled))
        cancelled.cancel()
        for _ in cancelled:
            pass

    async def asynchronously() -> str | None:
        async with AsyncTritonClient(generator_server.grpc_url) as client:
            return (await AsyncGenerator(client, "chat", log=log).generate(QUESTION, max_tokens=2)).log_id

    async_id = asyncio.run(asynchronously())
    assert whole.log_id is not None and stream.generation is not None and stream.generation.log_id is not None
    assert async_id is not None and len({whole.log_id, stream.generation.log_id, async_id}) == 3
    assert cancelled.generation is None or cancelled.generation.log_id is None  # no answer to rate
    with store.engine.connect() as connection:
        rows = {r.log_id: r for r in connection.execute(store.generations.table.select())}
    assert set(rows) == {whole.log_id, stream.generation.log_id, async_id}
    row = rows[whole.log_id]
    assert row.model == "chat" and row.version and row.answer == whole.text and row.tokens == whole.tokens
    assert json.loads(row.prompt) == [{"role": "user", "content": QUESTION}]
    assert json.loads(row.parameters) == {"max_tokens": 4}
    assert rows[stream.generation.log_id].answer == streamed
    assert rows[stream.generation.log_id].prompt_hash == row.prompt_hash  # the same question, as a chat turn
    items = read_answer_feedback(_written(tmp_path / "r.jsonl", f'{{"id": "{whole.log_id}", "rating": "good"}}\n'))
    assert store.generations.import_feedback("chat", items).matched == 1
    store.close()


def _written(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
