"""`tuneship data check`: planted wrong labels, duplicates, a conflict and a leak in a small seeded file are found
(and clean rows are rarely flagged); --fix writes a cleaned copy beside the file, never over it; bad input is one
line and exit 2 with nothing written."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
from conftest import synthetic_reviews, write_csv

from tuneship.cli import main
from tuneship.datacheck.duplicates import normalize
from tuneship.datacheck.findings import Finding
from tuneship.datacheck.fix import plan

pytestmark = pytest.mark.slow  # it embeds texts with a (tiny) encoder


def _planted(folder: Path) -> tuple[Path, Path, set[int], dict[str, set[int]]]:
    """A training file with 5% of labels flipped, two exact duplicates, a case-and-punctuation copy, a conflict,
    and an evaluation file with one text copied from training. Lines are the file's (the header is line 1)."""
    rows = synthetic_reviews(300, seed=11)
    rng = random.Random(5)
    flipped = set(rng.sample(range(len(rows)), 15))
    rows = [(text, ("negative" if label == "positive" else "positive") if i in flipped else label)
            for i, (text, label) in enumerate(rows)]
    planted = {"duplicate": set(), "near_duplicate": set(), "conflict": set()}
    clean = [i for i in range(len(rows)) if i not in flipped]
    for source in clean[:2]:
        rows.append(rows[source])
        planted["duplicate"].add(len(rows) + 1)
    text, label = rows[clean[2]]
    rows.append((text.upper() + "!!", label))
    planted["near_duplicate"].add(len(rows) + 1)
    text, label = rows[clean[3]]
    rows.append((text, "negative" if label == "positive" else "positive"))
    planted["conflict"].add(len(rows) + 1)
    train = write_csv(folder / "train.csv", rows)
    evaluation = [*synthetic_reviews(40, seed=12), rows[clean[4]]]
    return train, write_csv(folder / "eval.csv", evaluation), {i + 2 for i in flipped}, planted


def _findings(output: Path) -> list[dict[str, str]]:
    with (output / "issues.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_planted_label_errors_duplicates_a_conflict_and_a_leak_are_found(tiny_bert: Path, tmp_path: Path) -> None:
    train, evaluation, flipped, planted = _planted(tmp_path)
    output = tmp_path / "check"
    assert main(["data", "check", "--data", str(train), "--eval-file", str(evaluation), "--encoder", str(tiny_bert),
                 "--max-length", "32", "--near-threshold", "1", "--output", str(output)]) == 0
    found = _findings(output)
    by_kind: dict[str, set[int]] = {}
    for row in found:
        assert row["file"] in (str(train), str(evaluation)) and int(row["line"]) > 1
        by_kind.setdefault(row["kind"], set()).add(int(row["line"]))
    issues = by_kind.get("label_issue", set())
    assert len(issues & flipped) >= 0.8 * len(flipped), (sorted(issues), sorted(flipped))
    assert len(issues - flipped) <= 0.05 * 300  # clean rows rarely flagged
    for kind, lines in planted.items():
        assert lines <= by_kind.get(kind, set()), (kind, by_kind.get(kind))
    assert by_kind.get("duplicate", set()) == planted["duplicate"]  # every exact duplicate, nothing else
    [leak] = [row for row in found if row["kind"] == "leak"]
    assert leak["file"] == str(evaluation) and leak["line"] == "42" and leak["other"].startswith(f"{train}:")
    flip = next(row for row in found if row["kind"] == "label_issue" and int(row["line"]) in flipped)
    assert flip["suggested"] and flip["suggested"] != flip["given"]
    report = json.loads((output / "report.json").read_text())
    assert report["counts"]["label_issue"] == len(issues) and report["train_rows"] == 304
    assert set(report["classes"]) == {"positive", "negative"}
    assert (output / "check.png").read_bytes()[:4] == b"\x89PNG"


def test_fine_tuned_folds_blend_in_and_leave_nothing_behind(tiny_bert: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    train, _evaluation, flipped, _planted_rows = _planted(tmp_path)
    output = tmp_path / "check"
    assert main(["data", "check", "--data", str(train), "--encoder", str(tiny_bert), "--max-length", "32",
                 "--near-threshold", "1", "--folds", "3", "--fine-tune", "--output", str(output)]) == 0
    assert capsys.readouterr().out.count("fine-tuning fold") == 3  # one training run per fold
    issues = {int(row["line"]) for row in _findings(output) if row["kind"] == "label_issue"}
    assert len(issues & flipped) >= 0.8 * len(flipped)  # blended by log loss: never much worse than without
    assert not (output / ".folds").exists()
    assert json.loads((output / "report.json").read_text())["options"]["fine_tune"] == "True"


def test_fix_writes_a_cleaned_copy_beside_the_file_never_over_it(tiny_bert: Path, tmp_path: Path) -> None:
    train, _evaluation, flipped, _planted_rows = _planted(tmp_path)
    before = train.read_bytes()
    output = tmp_path / "check"
    assert main(["data", "check", "--data", str(train), "--encoder", str(tiny_bert), "--max-length", "32",
                 "--output", str(output), "--near-threshold", "1", "--fix", "--relabel"]) == 0
    assert train.read_bytes() == before
    cleaned = train.with_name("train.clean.csv")
    with cleaned.open(encoding="utf-8") as handle:
        kept = list(csv.DictReader(handle))
    texts = [row["text"] for row in kept]
    assert len(texts) == len(set(texts))  # the duplicates and the conflicting pair are gone
    assert all(normalize(t) != normalize(kept[0]["text"]) for t in texts[1:])
    label_of = {row["text"]: row["label"] for row in kept}
    issues = [row for row in _findings(output) if row["kind"] == "label_issue"]
    assert issues
    for issue in issues:  # relabelled, not dropped: the suggested label (for a flipped row, the true one back)
        assert label_of[issue["text"]] == issue["suggested"]
    assert sum(int(issue["line"]) in flipped for issue in issues) >= 0.8 * len(flipped)
    assert json.loads((output / "report.json").read_text())["cleaned"] == [str(cleaned)]


def test_the_fix_plan_drops_both_sides_of_a_conflict_and_respects_the_threshold() -> None:
    findings = [Finding("conflict", "f", 9, "x", "a", "b", 1.0, "f:3"), Finding("duplicate", "f", 7, "y", "a"),
                Finding("label_issue", "f", 5, "z", "a", "b", 0.05), Finding("label_issue", "f", 6, "w", "a", "b", 0.4)]
    drop, relabelled = plan(findings, relabel=True, threshold=0.1)
    assert drop == {"f:9", "f:3", "f:7"} and relabelled == {"f:5": "b"}
    drop, relabelled = plan(findings, relabel=False, threshold=None)
    assert drop == {"f:9", "f:3", "f:7", "f:5", "f:6"} and not relabelled


@pytest.mark.parametrize(("make", "arguments", "message"), [
    (None, ["--data", "{tmp}/missing.csv"], "missing.csv: no such file"),
    ("nolabel", ["--data", "{tmp}/nolabel.csv"], "nolabel.csv:2: no column 'label'"),
    ("few", ["--data", "{tmp}/few.csv"], "class 'negative' has 3 examples; 5-fold cross-validation needs at least 5"),
    (None, ["--task", "image-classification"], "tuneship data check reads text-classification, instruct data"),
    (None, ["--relabel"], "--relabel is what --fix does"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tiny_bert: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str], make: str | None,
                                                          arguments: list[str], message: str) -> None:
    if make == "nolabel":
        (tmp_path / "nolabel.csv").write_text("text\nfine film\n")
    if make == "few":
        write_csv(tmp_path / "few.csv", [(f"good film {i}", "positive") for i in range(8)]
                  + [(f"bad film {i}", "negative") for i in range(3)])
    output = tmp_path / "check"
    argv = ["data", "check", "--encoder", str(tiny_bert), "--output", str(output),
            *[a.format(tmp=tmp_path) for a in arguments]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not output.exists()


def test_train_clean_trains_on_the_cleaned_copy_and_records_what_it_dropped(tiny_bert: Path, tmp_path: Path) -> None:
    from tuneship.trainer import read_checkpoint

    train, evaluation, _flipped, planted = _planted(tmp_path)
    before = train.read_bytes()
    output = tmp_path / "model"
    assert main(["train", "--data", str(train), "--eval-file", str(evaluation), "--model", str(tiny_bert),
                 "--max-length", "32", "--epochs", "1", "--output", str(output), "--clean"]) == 0
    assert train.read_bytes() == before  # the cleaned copy is beside it
    manifest = read_checkpoint(output).manifest
    record = manifest["data_check"]
    assert record["source"] == str(train) and record["cleaned"] == str(train.with_name("train.clean.csv"))
    dropped = {int(where.rsplit(":", 1)[1]) for where in record["dropped"]}
    # (the tiny encoder's embeddings are near one another, so near duplicates are many here: what the check
    # finds is its own test's business; this one holds that what it found was dropped and recorded)
    assert planted["duplicate"] <= dropped and planted["conflict"] <= dropped
    assert record["findings"]["duplicate"] == len(planted["duplicate"]) and record["findings"]["conflict"] >= 1
    assert record["rows"] == 304 - len(record["dropped"]) == manifest["data"]["train_examples"]
    assert json.loads(Path(record["report"]).read_text())["cleaned"] == [record["cleaned"]]
    assert Path(record["report"]).parent == tmp_path / "model.data-check"


def test_train_clean_is_an_option_of_text_classification_only(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--task", "instruct", "--clean", "--output", str(tmp_path / "m")]) == 2
    assert "--clean is an option of text-classification training" in capsys.readouterr().err


def _instruct_file(folder: Path) -> tuple[Path, Path, dict[str, int]]:
    """Conversations (a classifier in words) with one of each instruct problem planted; lines as in the file."""
    rows = synthetic_reviews(120, seed=21)
    records: list[object] = [{"messages": [{"role": "user", "content": f"Positive or negative?\n\n{text}"},
                                           {"role": "assistant", "content": label}]} for text, label in rows]
    planted = {}
    records.append(records[0])
    planted["duplicate"] = len(records)
    first = records[1]["messages"]  # type: ignore[index]
    other = "negative" if first[1]["content"] == "positive" else "positive"
    records.append({"messages": [first[0], {"role": "assistant", "content": other}]})
    planted["conflict"] = len(records)
    records.append({"messages": [{"role": "user", "content": "Positive or negative?\n\nfine"},
                                 {"role": "assistant", "content": ""}]})
    planted["invalid"] = len(records)
    records.append({"messages": [{"role": "user", "content": "Positive or negative?"},
                                 {"role": "user", "content": "superb film <|im_end|> really"},
                                 {"role": "assistant", "content": "positive"}]})
    planted["template"] = len(records)
    records.append({"messages": [{"role": "user", "content": "Positive or negative?\n\n" + "great film " * 200},
                                 {"role": "assistant", "content": "positive"}]})
    planted["truncated"] = len(records)
    train = folder / "chats.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in records))
    evaluation = folder / "held.jsonl"
    evaluation.write_text(json.dumps(records[5]) + "\n")
    planted["leak"] = 1
    return train, evaluation, planted


def test_instruct_data_reports_every_problem_the_trainer_would_stop_at_and_more(
        tiny_bert: Path, tiny_llama: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train, evaluation, planted = _instruct_file(tmp_path)
    output = tmp_path / "check"
    assert main(["data", "check", "--task", "instruct", "--data", str(train), "--eval-file", str(evaluation),
                 "--encoder", str(tiny_bert), "--chat-model", str(tiny_llama), "--near-threshold", "1",
                 "--folds", "3", "--output", str(output), "--fix"]) == 0
    found: dict[str, set[int]] = {}
    for row in _findings(output):
        found.setdefault(row["kind"], set()).add(int(row["line"]))
    for kind, line in planted.items():
        assert line in found.get(kind, set()), (kind, found)
    assert found["duplicate"] == {planted["duplicate"]} and found["invalid"] == {planted["invalid"]}
    assert found["truncated"] == {planted["truncated"]} and found["template"] == {planted["template"]}
    template = next(r for r in _findings(output) if r["kind"] == "template")
    assert "second user turn" in template["suggested"] and "'<|im_end|>'" in template["suggested"]
    cleaned = train.with_name("chats.clean.jsonl")  # the trainer reads the copy: the invalid record is gone
    from tuneship.trainer.instruct.data import load_instruct_file

    kept = load_instruct_file(cleaned).conversations
    dropped = int(capsys.readouterr().out.split(" rows dropped")[0].rsplit("(", 1)[1])
    assert len(cleaned.read_text().splitlines()) == 125 - dropped and dropped >= 4  # incl. the invalid record
    texts = {c.messages[0]["content"] for c in kept}
    assert "Positive or negative?\n\nfine" not in texts
