"""`tuneship tune` on the embedded server: it measures every configuration, keeps the one its own measurements
rank best within the budget, and writes configs the server loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tuneship.client import TextClassifier, TritonClient
from tuneship.deploy import ServeOptions, TritonServer
from tuneship.repository import parse_pbtxt
from tuneship.tuning import Candidate, Trial, TuneOptions, choose, frontier, save, single_model_advice, tune


def _trial(tps: float, p99: float, errors: int = 0) -> Trial:
    return Trial(Candidate(64, 0, 1, 0), current=False, texts_per_second=tps,
                 latency_ms={"p50": p99 / 2, "p90": p99, "p95": p99, "p99": p99}, errors=errors)


def test_choice_is_the_fastest_within_budget_and_ties_go_to_lower_latency() -> None:
    slow, fast_over, fast, tied_lower = _trial(100, 10), _trial(500, 80), _trial(300, 40), _trial(296, 20)
    chosen, reason = choose([slow, fast_over, fast, tied_lower], 99, 50)
    assert chosen is tied_lower and "p99 <= 50 ms" in reason
    assert choose([fast_over, _trial(900, 1, errors=3)], 99, 50)[0] is None
    dominated = _trial(200, 30)  # slower and later than tied_lower
    assert frontier([slow, fast_over, fast, tied_lower, dominated], 99) == [slow, tied_lower, fast, fast_over]


@pytest.mark.integration  # tune serves its scratch repository; the test serves the result
def test_tune_writes_the_best_measured_configuration_and_the_server_loads_it(tiny_repository: Path,
                                                                             tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    shutil.copytree(tiny_repository, repository)
    report = tune(TuneOptions(model="tiny", latency_budget_ms=5000.0, repository=repository, concurrency=4,
                              window_s=0.3, max_batch_sizes=(8, 32), queue_delays_us=(3000,), instance_counts=(1,),
                              intra_op_threads=(1,)))
    measured = [t for t in report.trials if not t.note]
    assert len(report.trials) == 3 and len(measured) == 3  # the current configuration and the 2x1 grid
    assert report.chosen is not None
    assert report.chosen.texts_per_second >= 0.98 * max(t.texts_per_second for t in measured)
    chosen = report.chosen.candidate
    model = parse_pbtxt((repository / "tiny_model" / "config.pbtxt").read_text(encoding="utf-8"))
    assert model.max_batch_size == chosen.max_batch_size
    assert model.dynamic_batching.max_queue_delay_microseconds == chosen.queue_delay_us
    # The current configuration (all cores: no thread parameter) may win as well as a grid point (1 thread).
    threads = model.parameters["intra_op_thread_count"].string_value if "intra_op_thread_count" in \
        model.parameters else "0"
    assert int(threads) == chosen.intra_op_threads
    for name in ("tiny", "tiny_tokenizer", "tiny_postprocess"):  # one batch limit across the ensemble
        config = parse_pbtxt((repository / name / "config.pbtxt").read_text(encoding="utf-8"))
        assert config.max_batch_size == chosen.max_batch_size
    # The same graph and settings as one single-model classifier, measured as advice; nothing of it is written back.
    assert report.single_model_layout is not None and not report.single_model_layout.note
    assert report.single_model_layout.candidate == chosen and report.single_model_layout.texts_per_second > 0
    assert "single-model layout" in single_model_advice(report) and not (repository / "tiny_fused_layout").exists()
    json_path, png_path = save(report, repository)
    assert json.loads(json_path.read_text(encoding="utf-8"))["chosen"]["candidate"] == chosen.__dict__
    assert png_path.stat().st_size > 10_000
    with TritonServer(ServeOptions(model_repository=repository, grpc_port=0, http_port=0, metrics_port=0)) as server, \
            TritonClient(server.grpc_url) as client:
        assert len(TextClassifier(client, "tiny").classify(["good film", "bad film"])) == 2


def _write_config(repository: Path, text: str) -> None:
    config = parse_pbtxt(text)
    (repository / config.name).mkdir(parents=True)
    (repository / config.name / "config.pbtxt").write_text(text)


def test_tune_refuses_what_it_cannot_measure_naming_why(tmp_path: Path) -> None:
    from tuneship.tuning import TuneError

    with pytest.raises(TuneError, match="does not exist"):
        tune(TuneOptions(model="nothing", latency_budget_ms=10, repository=tmp_path))
    # A generator (one decoupled Python model) is not a classifier pipeline.
    _write_config(tmp_path, 'name: "chat" backend: "python" max_batch_size: 0 '
                            'input { name: "text_input" data_type: TYPE_STRING dims: [1] } '
                            'output { name: "text_output" data_type: TYPE_STRING dims: [-1] } '
                            'model_transaction_policy { decoupled: true }')
    with pytest.raises(TuneError, match="chat: tuneship tune measures classifier ensembles"):
        tune(TuneOptions(model="chat", latency_budget_ms=10, repository=tmp_path))
    # An ensemble whose steps are all Python models has no ONNX graph to tune.
    _write_config(tmp_path, 'name: "py_step" backend: "python" max_batch_size: 8 '
                            'input { name: "TEXT" data_type: TYPE_STRING dims: [1] } '
                            'output { name: "LABEL" data_type: TYPE_STRING dims: [1] }')
    _write_config(tmp_path, 'name: "py_only" platform: "ensemble" max_batch_size: 8 '
                            'input { name: "TEXT" data_type: TYPE_STRING dims: [1] } '
                            'output { name: "LABEL" data_type: TYPE_STRING dims: [1] } '
                            'ensemble_scheduling { step { model_name: "py_step" model_version: -1 '
                            'input_map { key: "TEXT" value: "TEXT" } output_map { key: "LABEL" value: "LABEL" } } }')
    with pytest.raises(TuneError, match="py_only: no ONNX Runtime model among its steps"):
        tune(TuneOptions(model="py_only", latency_budget_ms=10, repository=tmp_path))
    with pytest.raises(TuneError, match="--percentile 42: choose one of 50, 90, 95, 99"):
        tune(TuneOptions(model="py_only", latency_budget_ms=10, repository=tmp_path, percentile=42))


def test_invariance_wins_within_the_margin_and_not_beyond() -> None:
    moving, steady = _trial(300, 20), _trial(280, 25)
    moving.batch_variation, steady.batch_variation = 0.05, 0.0
    chosen, reason = choose([moving, steady], 99, 50, invariance_margin=0.10)
    assert chosen is steady and "batch-invariant" in reason
    assert choose([moving, steady], 99, 50, invariance_margin=0.05)[0] is moving  # 7% slower: over a 5% margin


@pytest.mark.slow
@pytest.mark.integration
def test_tune_sweeps_the_kept_variants_and_publishes_a_chosen_one(tiny_repository: Path, tmp_path: Path) -> None:
    from tuneship.exporter import ExportOptions, export_checkpoint
    from tuneship.repository import existing_versions
    from tuneship.tuning import kept_variants, pipeline_models, write_back

    repository = tmp_path / "repo"
    export_checkpoint(ExportOptions(checkpoint=tiny_repository.parent / "ckpt", name="tiny", repository=repository,
                                    precision="auto", keep_variants=True, force=True, accuracy_threshold=100.0))
    index = json.loads((repository / "tiny" / "1" / "variants" / "variants.json").read_text(encoding="utf-8"))
    report = json.loads((repository / "tiny" / "export_report.json").read_text(encoding="utf-8"))
    passed = {v["name"] for v in report["variants"] if v["passed"]}
    assert {e["name"] for e in index} == passed and len(passed) >= 2
    published, _, others = kept_variants(repository, "tiny")
    assert published == report["chosen"] and {k.name for k in others} == passed - {published}

    result = tune(TuneOptions(model="tiny", latency_budget_ms=5000.0, repository=repository, concurrency=2,
                              window_s=0.3, max_batch_sizes=(16,), queue_delays_us=(0,), instance_counts=(1,),
                              intra_op_threads=(1,), write=False))
    assert sorted(t.candidate.variant for t in result.trials if t.candidate.variant) == sorted(k.name for k in others)
    assert all(not t.note for t in result.trials) and result.chosen is not None

    # Publishing a variant: the ONNX model's next version holds its file, served at its graph level.
    ensemble, steps = pipeline_models(repository, "tiny")
    onnx_step = next(c for c in steps if c.platform == "onnxruntime_onnx")
    kept = others[0]
    before = existing_versions(repository / "tiny_model")
    written = write_back(TuneOptions(model="tiny", latency_budget_ms=1.0, repository=repository), ensemble, steps,
                         onnx_step, Candidate(16, 0, 1, 1, kept.name), kept)
    version = existing_versions(repository / "tiny_model")[-1]
    assert version == before[-1] + 1 and str(repository / "tiny_model" / str(version) / "model.onnx") in written
    assert (repository / "tiny_model" / str(version) / "model.onnx").read_bytes() == kept.path.read_bytes()
    config = parse_pbtxt((repository / "tiny_model" / "config.pbtxt").read_text(encoding="utf-8"))
    assert config.optimization.graph.level == kept.graph_level and config.max_batch_size == 16
    assert json.loads((repository / "tiny" / "export_report.json").read_text())["tuned_variant"] == kept.name
    assert kept_variants(repository, "tiny")[0] == kept.name
    with TritonServer(ServeOptions(model_repository=repository, grpc_port=0, http_port=0, metrics_port=0)) as server, \
            TritonClient(server.grpc_url) as client:
        assert len(TextClassifier(client, "tiny").classify(["good film", "bad film"])) == 2


def test_a_broken_variants_index_is_a_clear_error(tiny_repository: Path, tmp_path: Path) -> None:
    from tuneship.tuning import TuneError, kept_variants

    repository = tmp_path / "repo"
    shutil.copytree(tiny_repository, repository)
    index = repository / "tiny" / "1" / "variants" / "variants.json"
    index.parent.mkdir(parents=True)
    index.write_text('[{"precision": "int8"}]', encoding="utf-8")
    with pytest.raises(TuneError, match=r"variants\.json: not a variants index .* --no-variants"):
        kept_variants(repository, "tiny")
    assert kept_variants(repository, "tiny", read_index=False)[2] == []


@pytest.mark.integration  # tune serves the scratch repository on its own embedded Triton
def test_a_dry_run_measures_and_prints_but_writes_nothing(tiny_repository: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from tuneship.cli import main

    repository = tmp_path / "repo"
    shutil.copytree(tiny_repository, repository)

    def tree() -> dict[str, tuple[int, int]]:
        return {str(p.relative_to(repository)): (p.stat().st_mtime_ns, p.stat().st_size)
                for p in sorted(repository.rglob("*"))}

    before = tree()
    code = main(["tune", "--model", "tiny", "--model-repository", str(repository), "--latency-budget-ms", "5000",
                 "--max-batch-sizes", "8", "--queue-delays-us", "0", "--instance-counts", "1",
                 "--intra-op-threads", "1", "--window", "0.3", "--no-compare-fused", "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0 and "--dry-run: nothing written" in out and "texts/s" in out
    assert tree() == before  # not a config, report, chart or folder more


def test_the_tune_command_is_made_from_tune_options() -> None:
    """Options declared once: every TuneOptions field the command line takes is a flag with the field's help and
    default, and the parsed flags give back the dataclass."""
    import argparse
    import dataclasses

    from tuneship.arguments import Parser
    from tuneship.options import options_from_args
    from tuneship.tuning.cli import register

    parser = Parser(prog="tuneship")
    register(parser.add_subparsers())
    tune_parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["tune"]
    actions = {a.dest: a for a in tune_parser._actions}
    for spec in dataclasses.fields(TuneOptions):
        if spec.metadata.get("flag", "") is None:
            continue
        assert actions[spec.name].help == spec.metadata["help"], spec.name
    args = tune_parser.parse_args(["--model", "m", "--latency-budget-ms", "20", "--invariance-margin", "25",
                                   "--no-variants", "--window", "0.5", "--model-repository", "repo"])
    options = options_from_args(TuneOptions, args, texts=(), write=False)
    assert options == TuneOptions(model="m", latency_budget_ms=20.0, invariance_margin=0.25, variants=False,
                                  window_s=0.5, repository=Path("repo"), write=False)
    defaults = options_from_args(TuneOptions, tune_parser.parse_args(["--model", "m", "--latency-budget-ms", "5"]))
    assert defaults == TuneOptions(model="m", latency_budget_ms=5.0)  # the CLI's defaults are the dataclass's


def test_a_generators_choice_is_the_most_tokens_within_its_first_token_budget() -> None:
    from tuneship.tuning.generator import GeneratorTrial
    from tuneship.tuning.generator import choose as choose_generator

    def trial(rows: int, tps: float, p99: float, errors: int = 0) -> GeneratorTrial:
        return GeneratorTrial(rows, current=False, tokens_per_second=tps, ttft_ms={"p50": p99 / 2, "p99": p99},
                              errors=errors)

    few, many, too_slow, failing = trial(2, 120, 150), trial(8, 230, 380), trial(16, 240, 1500), trial(4, 300, 90, 1)
    chosen, reason = choose_generator([few, many, too_slow, failing], 99, 1000)
    assert chosen is many and "max_concurrency 8" in reason
    assert choose_generator([too_slow], 99, 1000)[0] is None


@pytest.mark.slow
@pytest.mark.integration
def test_tune_sweeps_a_generators_rows_per_step_and_writes_the_chosen_one(generator_repository: Path,
                                                                         tmp_path: Path) -> None:
    from tuneship.cli import main

    repository = tmp_path / "repo"
    shutil.copytree(generator_repository, repository)
    assert main(["tune", "--model", "chat", "--model-repository", str(repository), "--latency-budget-ms", "20000",
                 "--max-concurrencies", "2", "--concurrency", "3", "--max-tokens", "8"]) == 0
    report = json.loads((repository / "chat" / "tuning_report.json").read_text())
    assert sorted(t["max_concurrency"] for t in report["trials"]) == [2, 8]
    assert all(t["tokens_per_second"] > 0 and t["errors"] == 0 for t in report["trials"])
    best = max(report["trials"], key=lambda t: t["tokens_per_second"])["tokens_per_second"]
    assert report["chosen"]["tokens_per_second"] >= 0.98 * best
    config = parse_pbtxt((repository / "chat" / "config.pbtxt").read_text())
    assert config.parameters["max_concurrency"].string_value == str(report["chosen"]["max_concurrency"])
    assert main(["tune", "--model", "chat", "--model-repository", str(repository), "--latency-budget-ms", "100",
                 "--percentile", "95"]) == 2  # a generator's budget is on p50 or p99 of time to first token
