"""The single-model layout (`tuneship export --layout single`): one Python model answers as the ensemble does, with the
same checks and quality metrics, and what works on a published pipeline (tune, rollback, scoring) works on it."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from lanes import costs
from waiting import wait_for

from tuneship.client import ClientOptions, InvalidInputError, TextClassifier, TritonClient, TritonError
from tuneship.deploy import ServeOptions, TritonServer
from tuneship.exporter import TextExportOptions, export_checkpoint
from tuneship.exporter.errors import ExportError
from tuneship.exporter.options import ServingOptions
from tuneship.repository import existing_versions, is_single_model, parse_pbtxt

pytestmark = pytest.mark.integration

TEXTS = ["a superb and moving film", "dull, tedious and lifeless", "the cast was charming", "bland and clumsy",
         "gripping from start to finish", "an awful, boring mess", "x", "the plot thickens and never lets go"]
KEY = "fused-admin-key"


def _export_fused(checkpoint: Path, repository: Path, name: str = "tinyf") -> None:
    export_checkpoint(TextExportOptions(checkpoint=checkpoint, name=name, repository=repository, precision="fp32",
                                    optimize=False, serving=ServingOptions(layout="single")))


@pytest.fixture(scope="module")
@costs("slow")
def both_layouts(tiny_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's ensemble `tiny` and the same checkpoint published fused as `tinyf`, in one repository."""
    repository = tmp_path_factory.mktemp("single") / "repo"
    shutil.copytree(tiny_repository, repository)
    _export_fused(tiny_repository.parent / "ckpt", repository)
    return repository


def test_the_fused_model_answers_as_the_ensemble_does(both_layouts: Path) -> None:
    fused_files = {p.name for p in (both_layouts / "tinyf" / "1").iterdir()}
    assert {"model.py", "model.onnx", "tokenizer.json", "labels.txt", "tuneship_tokenizer.py",
            "tuneship_postprocess.py"} <= fused_files
    assert not (both_layouts / "tinyf_model").exists()  # one model, nothing else
    assert is_single_model(parse_pbtxt((both_layouts / "tinyf" / "config.pbtxt").read_text(encoding="utf-8")))
    assert "onnxruntime" in (both_layouts / "tinyf" / "requirements.txt").read_text(encoding="utf-8")
    options = ServeOptions(model_repository=both_layouts, grpc_port=0, http_port=0, metrics_port=0,
                           admin_key=KEY)
    with TritonServer(options) as server, TritonClient(server.grpc_url) as anonymous:
        ensemble = TextClassifier(anonymous, "tiny").classify(TEXTS)
        fused_classifier = TextClassifier(anonymous, "tinyf", batch_size=3, concurrency=3)
        # The config is for admins here: the labels come through the classification extension, as a probe.
        assert fused_classifier.labels() == TextClassifier(anonymous, "tiny").labels()
        fused = fused_classifier.classify(TEXTS)
        assert [p.label for p in fused] == [p.label for p in ensemble]
        difference = max(abs(f.scores[k] - e.scores[k]) for f, e in zip(fused, ensemble, strict=True)
                         for k in f.scores)
        assert difference <= 1e-5, difference
        # A bad row is refused on its own, naming the row, as the ensemble's tokenizer does.
        text = np.array([[b"fine"], [b"   "]], dtype=np.object_)
        with pytest.raises(InvalidInputError, match="TEXT row 1 is empty"):
            anonymous.infer("tinyf", {"TEXT": text}, validate=False)
        # Quality metrics, labelled with the model's name: the 8 texts above, not the label probe, published
        # within the flush interval (1 s) with no request after them.

        def counted() -> float:
            metrics = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
            return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                       if line.startswith("tuneship_predictions_total{") and 'model="tinyf"' in line)

        wait_for(lambda: counted() >= len(TEXTS), "the texts counted without a later request")
        assert counted() == len(TEXTS)
        metrics = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
        assert 'tuneship_texts_refused_total{model="tinyf",reason="empty"' in metrics


def test_the_command_line_asks_for_the_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    monkeypatch.setattr("tuneship.exporter.export.checkpoint_task", lambda path: "text-classification")
    from tuneship.exporter.cli import add_export_arguments, export_options_from_args

    parser = argparse.ArgumentParser()
    add_export_arguments(parser)
    chosen = export_options_from_args(parser.parse_args([str(tmp_path), "--layout", "single", "--instances", "2"]))
    assert chosen.serving.layout == "single" and chosen.serving.instance_count == 2
    assert export_options_from_args(parser.parse_args([str(tmp_path)])).serving.layout == "ensemble"


def test_a_layout_is_not_published_over_the_other(tiny_repository: Path, tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    shutil.copytree(tiny_repository, repository)
    with pytest.raises(ExportError, match="published with the ensemble layout"):
        _export_fused(tiny_repository.parent / "ckpt", repository, name="tiny")
    with pytest.raises(ExportError, match=r"--layout single runs the graph .* on the CPU"):
        export_checkpoint(TextExportOptions(checkpoint=tiny_repository.parent / "ckpt", name="other",
                                        repository=repository, target="gpu",
                                        serving=ServingOptions(layout="single")))
    assert not (repository / "other").exists()


def test_tune_rollback_and_scoring_work_on_the_fused_layout(both_layouts: Path, tmp_path: Path) -> None:
    from tuneship.exporter.layout import serving_options
    from tuneship.monitor.scoring import PublishedClassifier
    from tuneship.monitor.update import rollback
    from tuneship.tuning import TuneOptions, tune

    repository = tmp_path / "repo"
    repository.mkdir()
    shutil.copytree(both_layouts / "tinyf", repository / "tinyf")
    report = tune(TuneOptions(model="tinyf", latency_budget_ms=5000.0, repository=repository, concurrency=4,
                              window_s=0.3, max_batch_sizes=(8,), queue_delays_us=(0, 2000), instance_counts=(1,),
                              intra_op_threads=(1,)))
    assert report.chosen is not None and len([t for t in report.trials if not t.note]) == 3
    chosen = report.chosen.candidate  # the current configuration may win: compare with whatever was chosen
    config = parse_pbtxt((repository / "tinyf" / "config.pbtxt").read_text(encoding="utf-8"))
    threads = config.parameters["intra_op_thread_count"].string_value if "intra_op_thread_count" in \
        config.parameters else "0"
    assert (config.max_batch_size, int(threads)) == (chosen.max_batch_size, chosen.intra_op_threads)
    assert config.dynamic_batching.max_queue_delay_microseconds == chosen.queue_delay_us
    # What an update exports its candidate with: the tuned settings, in the single-model layout.
    kept = serving_options(repository, "tinyf")
    assert (kept.layout, kept.max_batch_size, kept.intra_op_threads, kept.queue_delay_us) == \
        ("single", chosen.max_batch_size, chosen.intra_op_threads, chosen.queue_delay_us)
    # A second export of the same checkpoint is v2; rolling back publishes v1's files as v3, live.
    _export_fused(_checkpoint_of(both_layouts / "tinyf"), repository)
    assert existing_versions(repository / "tinyf") == [1, 2]
    options = ServeOptions(model_repository=repository, grpc_port=0, http_port=0, metrics_port=0,
                           model_control_mode="explicit", load_models=("*",))
    with TritonServer(options) as server, TritonClient(server.grpc_url, ClientOptions(timeout_s=60)) as client:
        versions = rollback(repository, "tinyf", url=server.grpc_url)
        assert versions == {"tinyf": 3}
        served = TextClassifier(client, "tinyf").classify(TEXTS)
        result = client.infer("tinyf", {"TEXT": np.array([[b"a superb and moving film"]], dtype=np.object_)})
        assert result.version == "3"
    assert ((repository / "tinyf" / "3" / "model.onnx").read_bytes()
            == (repository / "tinyf" / "1" / "model.onnx").read_bytes())
    scored = PublishedClassifier(repository, "tinyf")
    assert scored.version == 3 and scored.predict(TEXTS) == [p.label for p in served]


def _checkpoint_of(model: Path) -> Path:
    return Path(json.loads((model / "export_report.json").read_text(encoding="utf-8"))["checkpoint"])


def test_a_killed_fused_stub_is_healed(both_layouts: Path) -> None:
    import os
    import signal

    from tuneship.deploy.stubs import list_stubs

    events: list[str] = []
    options = ServeOptions(model_repository=both_layouts, grpc_port=0, http_port=0, metrics_port=0)
    with TritonServer(options, log=events.append) as server, \
            TritonClient(server.grpc_url, ClientOptions(timeout_s=10)) as client:
        classifier = TextClassifier(client, "tinyf")
        expected = [p.label for p in classifier.classify(TEXTS)]
        assert server.pid is not None
        victim = next(stub.pid for stub in list_stubs(server.pid) if stub.model == "tinyf")
        os.kill(victim, signal.SIGKILL)

        def healed() -> bool:
            try:
                return [p.label for p in classifier.classify(TEXTS)] == expected and \
                    any("answering again" in e for e in events)
            except TritonError:  # while the stub is dead
                return False

        try:
            wait_for(healed, "healed after the stub was killed", timeout_s=90, interval_s=0.5)
        except AssertionError as error:
            raise AssertionError(f"{error}: {events}") from None
        assert any("tinyf" in e and "died" in e for e in events), events


def test_tune_publishes_a_kept_variant_as_the_fused_models_next_version(tiny_repository: Path,
                                                                        tmp_path: Path) -> None:
    from tuneship.tuning import Candidate, TuneOptions, graph_step, kept_variants, pipeline_models, write_back

    repository = tmp_path / "repo"
    export_checkpoint(TextExportOptions(checkpoint=tiny_repository.parent / "ckpt", name="tinyf", repository=repository,
                                    precision="auto", keep_variants=True, force=True, accuracy_threshold=100.0,
                                    serving=ServingOptions(layout="single")))
    published, _, others = kept_variants(repository, "tinyf")
    assert published and others  # the variants sit in the single model's own version folder
    caller, steps = pipeline_models(repository, "tinyf")
    assert steps == [] and graph_step(caller, steps) is caller
    kept = others[0]
    write_back(TuneOptions(model="tinyf", latency_budget_ms=1.0, repository=repository), caller, steps, caller,
               Candidate(16, 0, 1, 1, kept.name), kept)
    assert existing_versions(repository / "tinyf") == [1, 2]
    new, old = repository / "tinyf" / "2", repository / "tinyf" / "1"
    assert (new / "model.onnx").read_bytes() == kept.path.read_bytes()
    for name in ("model.py", "tokenizer.json", "labels.txt", "tuneship_tokenizer.py", "tuneship_postprocess.py"):
        assert (new / name).read_bytes() == (old / name).read_bytes(), name
    assert kept_variants(repository, "tinyf")[0] == kept.name
    assert (new / "variants" / "variants.json").is_file()  # the kept variants come along with the version
    config = parse_pbtxt((repository / "tinyf" / "config.pbtxt").read_text(encoding="utf-8"))
    assert config.parameters["graph_level"].string_value == str(kept.graph_level) and config.max_batch_size == 16
    with TritonServer(ServeOptions(model_repository=repository, grpc_port=0, http_port=0, metrics_port=0)) as server, \
            TritonClient(server.grpc_url) as client:
        result = client.infer("tinyf", {"TEXT": np.array([[b"good film"]], dtype=np.object_)})
        assert result.version == "2"


def test_bad_requests_batched_beside_good_ones_harm_nobody(both_layouts: Path) -> None:
    import threading

    options = ServeOptions(model_repository=both_layouts, grpc_port=0, http_port=0, metrics_port=0)
    with TritonServer(options) as server:
        with TritonClient(server.grpc_url) as client:
            expected = [p.label for p in TextClassifier(client, "tinyf").classify(TEXTS)]
        wrong: list[str] = []
        refused = [0]

        def good() -> None:
            with TritonClient(server.grpc_url) as client:
                classifier = TextClassifier(client, "tinyf")
                for _ in range(15):
                    labels = [p.label for p in classifier.classify(TEXTS)]
                    if labels != expected:
                        wrong.append(str(labels))

        def bad() -> None:
            huge = b"x" * (32 * 128 + 1)  # over the model's max_text_bytes (max length 32 x 128)
            with TritonClient(server.grpc_url) as client:
                for index in range(30):
                    row = b" " if index % 2 else huge
                    try:
                        client.infer("tinyf", {"TEXT": np.array([[row]], dtype=np.object_)}, validate=False)
                    except InvalidInputError:
                        refused[0] += 1

        threads = [threading.Thread(target=good) for _ in range(2)] + [threading.Thread(target=bad) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert not wrong, wrong[:2]
    assert refused[0] == 60  # every bad request refused on its own, with INVALID_ARG


def test_the_old_name_fused_still_works_with_a_notice(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    monkeypatch.setattr("tuneship.exporter.export.checkpoint_task", lambda path: "text-classification")
    from tuneship.exporter.cli import add_export_arguments, export_options_from_args
    from tuneship.exporter.text.model_configs import single_model_config
    from tuneship.repository import Pipeline, is_single_model, write_config

    parser = argparse.ArgumentParser()
    add_export_arguments(parser)
    chosen = export_options_from_args(parser.parse_args([str(tmp_path), "--layout", "fused"]))
    assert chosen.serving.layout == "single"
    assert "--layout fused is now --layout single" in capsys.readouterr().err
    assert ServingOptions(layout="fused").layout == "single"  # the Python API takes the old name too
    # A repository published before the rename (parameters.layout "fused") is still a single-model classifier.
    old = single_model_config("old", ["a", "b"], 32, "[PAD]", 0, ServingOptions(layout="single"))
    old.parameters["layout"].string_value = "fused"
    write_config(tmp_path, old)
    assert is_single_model(old) and Pipeline(tmp_path, "old").layout == "single"
