"""`tuneship search`'s rules without training: the space and its file, define-by-run choices, the median rule,
the front, constraints and the pick, and the command's bad inputs (one line, exit 2, nothing written)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from tuneship.cli import main
from tuneship.search.options import SearchError, SearchOptions
from tuneship.search.pruning import MedianRule, intermediate, quarter_steps
from tuneship.search.publish import pick
from tuneship.search.report import Row, closest, constraint_values, front
from tuneship.search.space import apply_space_file, resolve, suggest, task_space
from tuneship.space import Choice, Floats, Ints

MODELS = {"minilm": "minilm"}


def _options(tmp_path: Path, **given: object) -> SearchOptions:
    return SearchOptions(output=tmp_path / "search", **given)  # type: ignore[arg-type]


def test_every_task_declares_a_space_whose_methods_it_trains() -> None:
    from tuneship.tasks import TASKS
    from tuneship.trainer.config import TASK_DEFAULTS, TASK_METHOD_OPTIONS

    for name in TASKS:
        space = task_space(name)
        assert space.task == name
        for method, options in space.methods.items():
            assert method in TASK_DEFAULTS[name].methods
            assert set(options) <= set(TASK_METHOD_OPTIONS[name][method]), (name, method)
        assert space.default["method"] in space.methods


def test_a_space_file_narrows_and_overrides_the_defaults(tmp_path: Path) -> None:
    base = task_space("text-classification")
    methods, precisions, layouts = apply_space_file(base, {
        "methods": ["lora", "features"], "precisions": ["fp32"], "layouts": ["single"],
        "lora": {"learning_rate": {"low": 1e-4, "high": 1e-3, "log": True}, "lora_rank": [4, 8], "epochs": 1,
                 "max-length": {"low": 32, "high": 64}}}, "space.yaml")
    assert list(methods) == ["lora", "features"] and precisions == ("fp32",) and layouts == ("single",)
    assert methods["lora"]["learning_rate"] == Floats(1e-4, 1e-3, log=True)
    assert methods["lora"]["lora_rank"] == Choice((4, 8))
    assert methods["lora"]["epochs"] == Choice((1,))
    assert methods["lora"]["max_length"] == Ints(32, 64)
    assert methods["features"] == base.methods["features"]


@pytest.mark.parametrize(("task", "raw", "message"), [
    ("text-classification", {"full": {"lora_rank": [4]}}, "lora_rank is an option of lora, not of full"),
    ("text-classification", {"full": {"augment": [True]}},
     "augment is an option of image-classification training, not of --task text-classification"),
    ("image-classification", {"prompt-tuning": {"learning_rate": 0.1}},
     "'prompt-tuning' is a method of text-classification, not of --task image-classification"),
    ("text-classification", {"methods": ["lora", "dreambooth"]}, "'dreambooth' is not a method"),
    ("text-classification", {"precisions": ["int4"]}, "'int4' is not a precision"),
    ("image-classification", {"layouts": ["single"]}, "'single' is not a layout --task image-classification"),
    ("text-classification", {"lora": {"lora_rank": []}}, "lora.lora_rank: an empty list"),
    ("text-classification", {"lora": {"learning_rate": {"low": 1e-2, "high": 1e-4}}}, "is above high"),
    ("text-classification", {"lora": {"learning_rate": {"low": 0, "high": 1, "log": True}}}, "must start above 0"),
    ("text-classification", {"full": {"data": "x.csv"}}, "data is the same for every trial"),
    ("text-classification", {"full": {"nonsense": 1}}, "unknown option 'nonsense' for full"),
    ("text-classification", {"optimizer": "adam"}, "unknown entry 'optimizer'"),
])
def test_a_space_file_entry_of_another_method_or_task_is_refused_by_name(task: str, raw: dict[str, object],
                                                                        message: str) -> None:
    with pytest.raises(SearchError, match=message.replace("(", r"\(").replace("'", "'")):
        apply_space_file(task_space(task), raw, "space.yaml")


def test_a_trial_picks_a_method_then_only_that_methods_options() -> None:
    space = resolve(SearchOptions(output=Path("unused")), {"minilm": "minilm", "minilm-L3": "/m/L3"})
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=3))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        chosen = suggest(trial, space)
        method = chosen["method"]
        seen.add(method)
        assert set(chosen) == {"model", "method", "precision", "layout", *space.methods[method]}
        assert all(key in ("model", "method", "precision", "layout") or key.startswith(f"{method}.")
                   for key in trial.params)
        study.tell(trial, [0.5, 1.0])
    assert len(seen) > 1


def test_the_median_rule_prunes_below_the_median_of_finished_trials_only_when_it_has_enough() -> None:
    rule = MedianRule(startup_trials=2)
    finished = [{1: 0.8, 2: 0.85}, {1: 0.6, 2: 0.9}, {1: 0.7}]
    assert rule.prune(1, 0.65, finished)  # median 0.7
    assert not rule.prune(1, 0.75, finished)
    assert not rule.prune(2, 0.1, finished[2:])  # one finished trial reached quarter 2: not enough
    assert not rule.prune(4, 0.0, finished)  # the end of training is never pruned
    assert intermediate({"eval_accuracy": 0.7, "eval_loss": 0.3}) == 0.7
    assert intermediate({"eval_loss": 0.3}) == -0.3
    assert quarter_steps(10) == {2, 5, 8, 10}


def _row(number: int, quality: float, p99: float, constraints: list[float] | None = None, state: str = "complete",
         default: bool = False, checkpoint: str = "") -> Row:
    outcome = {"quality": quality, "p99_ms": p99, "throughput": 10.0, "size_mb": 5.0, "checkpoint": checkpoint}
    return Row(number=number, state=state, default=default, choice={"method": "full", "precision": "fp32"},
               outcome=outcome if state == "complete" else {}, constraints=constraints or [])


def test_the_front_keeps_trials_no_feasible_trial_beats_on_both_objectives() -> None:
    rows = [_row(0, 0.80, 10.0), _row(1, 0.85, 20.0), _row(2, 0.78, 12.0), _row(3, 0.90, 30.0, [5.0]),
            _row(4, 0.0, 0.0, state="pruned"), _row(5, 0.85, 25.0)]
    assert [r.number for r in front(rows)] == [1, 0]  # 2 is beaten by 0, 5 by 1, 3 is infeasible
    assert [r.number for r in closest([rows[3], _row(6, 0.9, 50.0, [9.0])])] == [3, 6]


def test_constraints_are_feasibility_and_the_pick_is_the_most_accurate_feasible_trial(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    options = _options(tmp_path, max_p99_ms=15.0, min_quality=0.7)
    assert constraint_values(options, {"p99_ms": 12.0, "size_mb": 3.0, "quality": 0.8}) == [-3.0, pytest.approx(-0.1)]
    rows = [_row(0, 0.9, 20.0, checkpoint=str(tmp_path / "a")), _row(1, 0.8, 12.0, checkpoint=str(tmp_path / "b")),
            _row(2, 0.6, 5.0, checkpoint=str(tmp_path / "b"))]
    assert pick(options, rows).number == 1  # 0 is too slow, 2 not accurate enough
    with pytest.raises(SearchError, match="no trial meets the constraints"):
        pick(_options(tmp_path, max_p99_ms=1.0), rows)
    assert pick(_options(tmp_path), rows).number == 0


@pytest.mark.parametrize(("arguments", "message"), [
    (["--data", "missing.csv"], "--data missing.csv: file not found"),
    (["--task", "nonsense"], "nonsense"),
    (["--task", "image-classification", "--layers", "2"], "--layers: shallower copies are for encoders"),
    (["--model", "./no-such-model/"], "not a Hugging Face model folder"),
    (["--method", "dreambooth"], "--method dreambooth: not in the space"),
    (["--resume"], "--resume: no search in"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          arguments: list[str], message: str) -> None:
    output = tmp_path / "search"
    assert main(["search", "--output", str(output), *arguments]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not output.exists()


def test_a_storage_that_cannot_be_reached_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "search"
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    assert main(["search", "--output", str(output), "--storage", url]) == 2
    err = capsys.readouterr().err.strip()
    assert f"--storage {url}: cannot be reached" in err and len(err.splitlines()) == 1, err
    assert not output.exists()


def test_a_finished_search_is_not_overwritten_without_resume(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "search"
    output.mkdir()
    (output / "study.db").write_bytes(b"")
    assert main(["search", "--output", str(output)]) == 2
    assert "already holds a search" in capsys.readouterr().err


def test_a_search_with_no_trial_inside_the_constraints_exits_2(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import tuneship.search.study as study

    missed, met = [_row(0, 0.8, 20.0, [5.0])], [_row(1, 0.8, 10.0)]
    found = [study.SearchReport(rows=rows, front=front(rows), quality="accuracy", png=None) for rows in (missed, met)]
    monkeypatch.setattr(study, "search", lambda options: found.pop(0))
    assert main(["search", "--output", str(tmp_path / "a"), "--max-p99-ms", "15"]) == 2
    assert main(["search", "--output", str(tmp_path / "b"), "--max-p99-ms", "15"]) == 0


def test_a_trials_layout_and_precision_reach_the_export_options(tmp_path: Path) -> None:
    from tuneship.search.trial import export_options

    options = export_options("text-classification", tmp_path, "trial-001", tmp_path / "repo",
                             {"precision": "int8", "layout": "single"}, keep=1)
    assert options.precision == "int8" and options.serving.layout == "single" and options.keep == 1
    image = export_options("image-classification", tmp_path, "trial-002", tmp_path / "repo", {"precision": "fp32"})
    assert image.precision == "fp32" and image.serving.layout == "ensemble"
