"""Data validation: every bad input names the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneship.trainer.errors import DataError
from tuneship.trainer.text.data import check_labels, load_file, stratified_split


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_file(tmp_path / "absent.csv")


def test_missing_column_lists_the_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", "review,label\ngood,pos\n")
    with pytest.raises(DataError, match=r"d\.csv:2: no column 'text' \(columns: label, review\)"):
        load_file(path)


def test_empty_text_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", "text,label\ngood,pos\n  ,neg\nbad,neg\n")
    with pytest.raises(DataError, match=r"d\.csv:3: field 'text' is empty"):
        load_file(path)


def test_missing_label_in_jsonl(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl", '{"text": "good", "label": "pos"}\n{"text": "bad"}\n')
    with pytest.raises(DataError, match=r"d\.jsonl:2: field 'label' is missing"):
        load_file(path)


def test_undecodable_bytes_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"text,label\ngood,pos\ncaf\xe9 au lait,neg\n")
    with pytest.raises(DataError, match=r"d\.csv:3: bytes that are not valid utf-8"):
        load_file(path)
    assert load_file(path, encoding="latin-1").texts[1] == "café au lait"


def test_duplicates_are_dropped_with_a_warning(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.tsv", "text\tlabel\ngood\tpos\ngood\tpos\nbad\tneg\ngood\tpos\n")
    with pytest.warns(UserWarning, match="2 duplicated rows dropped"):
        data = load_file(path)
    assert data.texts == ["good", "bad"]
    assert data.duplicates_dropped == 2


def test_single_class_is_rejected(tmp_path: Path) -> None:
    data = load_file(_write(tmp_path / "d.csv", "text,label\na,pos\nb,pos\n"))
    with pytest.raises(DataError, match="at least two classes"):
        check_labels(data, None)


def test_eval_label_unseen_in_training(tmp_path: Path) -> None:
    train = load_file(_write(tmp_path / "t.csv", "text,label\na,pos\nb,neg\n"))
    evaluation = load_file(_write(tmp_path / "e.csv", "text,label\nc,pos\nd,neutral\n"))
    with pytest.raises(DataError, match=r"e\.csv:3: label 'neutral' does not occur in the training data"):
        check_labels(train, evaluation)


def test_stratified_split_is_seeded_and_keeps_shares(tmp_path: Path) -> None:
    rows = "".join(f"text {i},{'pos' if i % 4 else 'neg'}\n" for i in range(200))
    data = load_file(_write(tmp_path / "d.csv", "text,label\n" + rows))
    train_a, eval_a = stratified_split(data, 0.2, seed=3)
    train_b, eval_b = stratified_split(data, 0.2, seed=3)
    assert eval_a.texts == eval_b.texts and train_a.texts == train_b.texts
    assert len(eval_a.examples) == 40
    assert eval_a.label_counts() == {"pos": 30, "neg": 10}
    assert not set(train_a.texts) & set(eval_a.texts)


def test_cli_reports_data_errors_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tuneship.cli import main

    output = tmp_path / "out"
    code = main(["train", "--data", str(tmp_path / "missing.csv"), "--output", str(output)])
    captured = capsys.readouterr()
    assert code == 2
    assert "missing.csv: no such file" in captured.err
    assert "Traceback" not in captured.err
    assert not output.exists()


def test_parquet_and_custom_columns(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"review": ["good", "bad", ""], "stars": ["5", "1", "3"]}), path)
    with pytest.raises(DataError, match=r"d\.parquet:3: field 'review' is empty"):
        load_file(path, text_column="review", label_column="stars")


def test_builtin_data_sets_are_deduplicated_and_labelled() -> None:
    from tuneship.trainer.builtin_data import load_builtin

    rotten = load_builtin("rotten-tomatoes")
    assert set(rotten.label_counts()) == {"fresh", "rotten"}
    assert len(rotten.examples) > 12000
    assert len(set(rotten.texts)) == len(rotten.texts)
    assert set(load_builtin("tweets").label_counts()) == {"negative", "neutral", "positive"}
    with pytest.raises(DataError, match="built-in data sets: rotten-tomatoes, tweets"):
        load_builtin("imdb")


@pytest.mark.parametrize("missing", ["NaN", "nan", "None", "null", "N/A"])
def test_missing_value_labels_are_refused_with_file_and_line(tmp_path: Path, missing: str) -> None:
    path = _write(tmp_path / "d.csv", f"text,label\ngood,pos\nmeh,{missing}\nbad,neg\n")
    with pytest.raises(DataError, match=rf"d\.csv:3: field 'label' is '{missing}', a missing value"):
        load_file(path)
    jsonl = _write(tmp_path / "d.jsonl", '{"text": "good", "label": "pos"}\n{"text": "meh", "label": null}\n')
    with pytest.raises(DataError, match=r"d\.jsonl:2: field 'label' is missing"):
        load_file(jsonl)


def test_a_class_that_a_sample_limit_removes_is_warned_about(tmp_path: Path) -> None:
    rows = "".join(f"text {i},{'common' if i < 99 else 'rare'}\n" for i in range(100))
    data = load_file(_write(tmp_path / "d.csv", "text,label\n" + rows))
    with pytest.warns(UserWarning, match=r"no example of 'rare'"):
        subset = data.head(10, seed=1)
    assert "rare" not in subset.label_counts()
    assert any("'rare'" in note for note in subset.notes)


def test_a_field_over_128_kb_is_read_whole(tmp_path: Path) -> None:
    long_text = "word " * 60_000  # 300 KB, over csv's default field limit
    path = _write(tmp_path / "d.csv", f'text,label\n"{long_text}",pos\nshort,neg\n')
    data = load_file(path)
    assert len(data.texts[0]) == len(long_text.strip())


def test_a_jsonl_string_holding_a_line_separator_stays_one_record(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl", '{"text": "first\u2028still first", "label": "pos"}\n'
                                        '{"text": "second\u0085x", "label": "neg"}\n')
    data = load_file(path)
    assert data.texts == ["first\u2028still first", "second\u0085x"]


def test_an_output_that_cannot_be_a_directory_is_refused_before_loading(tmp_path: Path) -> None:
    from tuneship.cli import main

    blocker = _write(tmp_path / "file", "not a directory")
    train = _write(tmp_path / "t.csv", "text,label\ngood,pos\nbad,neg\n")
    for output in (blocker / "run", blocker):
        code = main(["train", "--data", str(train), "--output", str(output), "--overwrite"])
        assert code == 2
    assert blocker.read_text() == "not a directory"  # --overwrite did not replace a file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "t.csv"]  # and left nothing behind
