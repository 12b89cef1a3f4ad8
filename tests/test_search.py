"""`tuneship search` end to end on a tiny encoder and tiny data: real training, real exports through the gate,
served figures fixed per method (tests never compare measured latencies), one real Triton measurement, a killed
search resumed, two workers on one PostgreSQL study, and the pick published."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from search_helpers import FULL_YAML, P99_MS, SPACE_YAML, fixed, options
from waiting import wait_for

from tuneship.cli import main
from tuneship.search.pruning import MedianRule
from tuneship.search.study import search

HELPER = Path(__file__).with_name("search_helpers.py")


@pytest.fixture(scope="module")
def space_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("space") / "space.yaml"
    path.write_text(SPACE_YAML)
    return path


@pytest.fixture(scope="module")
def finished(tiny_bert: Path, review_files: tuple[Path, Path], space_file: Path,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A 4-trial search over two methods in which trial 2's model fails to load."""
    output = tmp_path_factory.mktemp("search") / "out"
    report = search(options(output, *review_files, tiny_bert, space_file, trials=4), measurer=fixed(fail=(2,)))
    return output, report


pytestmark = pytest.mark.slow


def test_a_search_records_every_trial_and_keeps_the_front(finished: tuple[Path, object]) -> None:
    output, report = finished
    rows = report.rows  # type: ignore[attr-defined]
    assert [r.number for r in rows] == [0, 1, 2, 3]
    assert rows[0].default and rows[0].choice["method"] == "full" and rows[0].state == "complete"
    # The trial whose model failed to load is recorded with its reason; the search went on.
    assert rows[2].state == "fail" and rows[2].reason.startswith("serving: ") and "did not load" in rows[2].reason
    assert all(r.state == "complete" for r in rows if r.number != 2)
    for row in rows:
        if row.complete:
            assert row.p99_ms == P99_MS[row.choice["method"]]
            assert 0.0 <= row.quality <= 1.0 and row.outcome["size_mb"] > 0 and row.outcome["train_peak_mb"] > 0
    kept = {r.number for r in report.front}  # type: ignore[attr-defined]
    assert kept and kept <= {r.number for r in rows if r.complete}
    for row in rows:  # the front's checkpoints and models stay; the rest go; every log stays
        folder = output / "trials" / f"{row.number:03d}"
        assert (folder / "log.txt").is_file()
        assert (folder / "checkpoint").is_dir() == (row.number in kept), row
        assert (output / "repository" / f"trial-{row.number:03d}").is_dir() == (row.number in kept), row
    with (output / "trials.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [int(r["number"]) for r in table] == [0, 1, 2, 3]
    assert {int(r["number"]) for r in table if r["on_front"] == "True"} == kept
    pareto = json.loads((output / "pareto.json").read_text())
    assert [entry["number"] for entry in pareto["front"]] == [r.number for r in report.front]  # type: ignore
    assert pareto["default"]["number"] == 0 and pareto["best"]["number"] == report.front[0].number  # type: ignore
    assert (output / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_publish_from_a_search_takes_the_most_accurate_trial_inside_the_constraints(
        finished: tuple[Path, object], tmp_path: Path) -> None:
    output, report = finished
    rows = [r for r in report.rows if r.complete]  # type: ignore[attr-defined]
    budget = 10.0  # only the features trials (8 ms) fit
    fitting = [r for r in rows if r.p99_ms <= budget]
    if not fitting:
        pytest.skip("this search drew no features trial")  # the random sampler's draw, seeded
    expected = max(fitting, key=lambda r: (r.quality, -r.p99_ms))
    repository = tmp_path / "repository"
    assert main(["search", "--publish-from", str(output), "--output", str(output), "--max-p99-ms", str(budget),
                 "--model-repository", str(repository), "--name", "best"]) == 0
    published = json.loads((repository / "best" / "export_report.json").read_text())
    assert Path(published["checkpoint"]) == Path(expected.outcome["checkpoint"])
    assert main(["search", "--publish-from", str(output), "--output", str(output), "--max-p99-ms", "1",
                 "--model-repository", str(repository), "--name", "never"]) == 2
    assert not (repository / "never").exists()


class _AlwaysPrune(MedianRule):
    def prune(self, quarter: int, value: float, finished: object) -> bool:
        return True


def test_a_pruned_trial_stops_training_and_the_search_goes_on(tiny_bert: Path, review_files: tuple[Path, Path],
                                                                space_file: Path, tmp_path: Path) -> None:
    space = tmp_path / "full.yaml"
    space.write_text(FULL_YAML)
    report = search(options(tmp_path / "out", *review_files, tiny_bert, space, trials=3, prune=True),
                    measurer=fixed(), rule=_AlwaysPrune())
    states = [r.state for r in report.rows]
    assert states == ["complete", "pruned", "pruned"]  # the defaults' trial is never pruned
    for row in report.rows[1:]:
        assert row.reason.startswith("pruned: quarter 1")
        assert not (tmp_path / "out" / "trials" / f"{row.number:03d}" / "checkpoint").exists()


def _worker(tmp_path: Path, output: Path, tiny_bert: Path, review_files: tuple[Path, Path], space: Path,
            **given: object) -> subprocess.Popen[bytes]:
    arguments = {"output": str(output), "train": str(review_files[0]), "evaluation": str(review_files[1]),
                 "model": str(tiny_bert), "space": str(space), **given}
    log = open(tmp_path / f"worker-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115
    return subprocess.Popen([sys.executable, str(HELPER), json.dumps(arguments)], stdout=log, stderr=log)


def _trials(output: Path, storage: str | None = None) -> list[object]:
    import optuna

    url = storage or f"sqlite:///{output / 'study.db'}"
    return list(optuna.load_study(study_name="tuneship-search", storage=url).get_trials(deepcopy=False))


def test_a_killed_search_resumes_without_repeating_finished_trials(tiny_bert: Path, review_files: tuple[Path, Path],
                                                                   space_file: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    worker = _worker(tmp_path, output, tiny_bert, review_files, space_file, trials=3)
    try:  # killed while its second trial trains
        wait_for(lambda: (output / "trials" / "001" / "log.txt").is_file() or worker.poll() is not None,
                 "the second trial started", timeout_s=180)
        assert worker.poll() is None, "the search finished before it could be killed"
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    finished_before = {t.number: t.user_attrs["choice"] for t in _trials(output)  # type: ignore[attr-defined]
                       if t.state.name == "COMPLETE"}  # type: ignore[attr-defined]
    assert 0 in finished_before
    resumed = search(options(output, *review_files, tiny_bert, space_file, trials=3, resume=True),
                     measurer=fixed())
    trials = _trials(output)
    counted = [t for t in trials if t.state.name == "COMPLETE"]  # type: ignore[attr-defined]
    assert len(counted) == 3
    interrupted = [t for t in trials if t.user_attrs.get("reason", "").startswith("interrupted")]  # type: ignore
    assert [t.number for t in interrupted] == [1]  # type: ignore[attr-defined]
    retry = next(t for t in trials if t.user_attrs.get("retry_of") == 1)  # type: ignore[attr-defined]
    assert retry.params == interrupted[0].params  # type: ignore[attr-defined]
    for choice in finished_before.values():  # finished before the kill: run once, not again
        assert sum(t.user_attrs.get("choice") == choice for t in counted) == 1  # type: ignore[attr-defined]
    assert len(resumed.rows) == len(trials)


@pytest.mark.integration
def test_two_workers_on_one_postgresql_study_share_one_budget(postgres_url: str, tiny_bert: Path,
                                                              review_files: tuple[Path, Path], space_file: Path,
                                                              tmp_path: Path) -> None:
    output = tmp_path / "out"
    storage = postgres_url.replace("/postgres", "/postgres")
    workers = [_worker(tmp_path, output, tiny_bert, review_files, space_file, trials=4, storage=storage)
               for _ in range(2)]
    for worker in workers:
        assert worker.wait(timeout=600) == 0
    trials = _trials(output, storage)
    complete = [t for t in trials if t.state.name == "COMPLETE"]  # type: ignore[attr-defined]
    assert len(complete) == 4  # none lost
    assert len({t.number for t in complete}) == 4  # type: ignore[attr-defined]
    workers_seen = {Path(t.user_attrs["outcome"]["checkpoint"]).parent.name for t in complete}  # type: ignore
    assert len(workers_seen) == 4  # every trial its own folder: none run twice
    assert sum(t.user_attrs.get("default", False) for t in complete) >= 1  # type: ignore[attr-defined]
    shutil.rmtree(output, ignore_errors=True)


@pytest.mark.integration
def test_the_triton_measurer_loads_measures_and_unloads_a_published_model(tiny_repository: Path,
                                                                          tmp_path: Path) -> None:
    from tuneship.client import TritonClient
    from tuneship.search.measure import TritonMeasurer
    from tuneship.tasks import TEXT_CLASSIFICATION

    repository = tmp_path / "repository"
    shutil.copytree(tiny_repository, repository)
    measurer = TritonMeasurer(repository, ["a superb film", "dull and bland"], concurrency=2, window_s=0.3)
    try:
        for _ in range(2):  # the second trial's measurement reuses the server
            served = measurer("tiny", TEXT_CLASSIFICATION)
            assert served.errors == 0 and served.p99_ms > 0 and served.throughput > 0 and served.served_mb >= 0
        with TritonClient(measurer.server.grpc_url) as client:
            assert not client.is_model_ready("tiny")  # unloaded once measured
    finally:
        measurer.close()
