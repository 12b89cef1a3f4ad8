"""Serving options: restricted APIs behind a key, hot updates under load, failed versions rolled back."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from lanes import costs

from tuneship.client import ADMIN_HEADER, ClientOptions, PermissionDeniedError, TextClassifier, TritonClient
from tuneship.deploy import ServeOptions, TritonServer
from tuneship.deploy.publish import PublishError, publish, served_versions
from tuneship.repository import RepositoryError

pytestmark = [pytest.mark.integration, pytest.mark.slow]
KEY = "s3cret-admin-key"
TEXTS = ["a superb and moving film", "dull, tedious and lifeless", "the cast was charming", "bland and clumsy",
         "gripping from start to finish", "an awful, boring mess", "x", "the plot"]


@pytest.fixture
def repository(tiny_repository: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(tiny_repository, copy)
    return copy


@pytest.fixture
@costs("integration")
def server(repository: Path):  # type: ignore[no-untyped-def]
    options = ServeOptions(model_repository=repository, grpc_port=0, http_port=0, metrics_port=0,
                           model_control_mode="explicit", load_models=("*",), admin_key=KEY)
    with TritonServer(options) as running:
        yield running


@pytest.fixture(scope="module")
@costs("slow")
def second_checkpoint(tiny_bert: Path, review_files: tuple[Path, Path],
                      tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tuneship.trainer import TextTrainConfig, train

    output = tmp_path_factory.mktemp("second") / "ckpt"
    train(TextTrainConfig(data=str(review_files[0]), eval_file=str(review_files[1]), model=str(tiny_bert),
                      output=str(output), epochs=1, learning_rate=1e-3, batch_size=16, max_length=32, seed=99))
    return output


def _admin(server: TritonServer) -> TritonClient:
    return TritonClient(server.grpc_url, ClientOptions(timeout_s=60, headers={ADMIN_HEADER: KEY}))


def test_restricted_apis_refuse_callers_without_the_key(server: TritonServer) -> None:
    with TritonClient(server.grpc_url) as anonymous:
        with pytest.raises(PermissionDeniedError, match="restricted"):
            anonymous.unload_model("tiny")
        with pytest.raises(PermissionDeniedError):
            anonymous.get_model_config("tiny")
        # Inference stays open, and labels come from the classification extension instead of the config.
        classifier = TextClassifier(anonymous, "tiny")
        assert classifier.labels() == ["negative", "positive"]
        assert len(classifier.classify(TEXTS)) == len(TEXTS)
        assert anonymous.is_model_ready("tiny")
    with _admin(server) as admin:
        assert admin.get_model_config("tiny")["name"] == "tiny"
        admin.unload_model("tiny")
        assert not admin.is_model_ready("tiny")
        admin.load_model("tiny")
        assert admin.is_model_ready("tiny")
    status = subprocess.run([sys.executable, "-m", "tuneship", "deploy", "status", "--url", server.grpc_url,
                             "--admin-key", KEY], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert "tiny_model" in status.stdout and "READY" in status.stdout
    refused = subprocess.run([sys.executable, "-m", "tuneship", "deploy", "unload", "tiny", "--url",
                              server.grpc_url], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "restricted" in refused.stderr
    assert "--admin-key" in refused.stderr and "TUNESHIP_ADMIN_KEY" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_publish_under_load_switches_versions_without_failures(server: TritonServer, repository: Path,
                                                               second_checkpoint: Path) -> None:
    import torch

    from tuneship.exporter import TextExportOptions
    from tuneship.trainer import load_classifier

    failures: list[str] = []
    answered = [0]
    stop = threading.Event()

    def load() -> None:
        with TritonClient(server.grpc_url, ClientOptions(timeout_s=30)) as client:
            classifier = TextClassifier(client, "tiny", batch_size=4, concurrency=2)
            while not stop.is_set():
                try:
                    answered[0] += len(classifier.classify(TEXTS))
                except Exception as error:  # any failure counts
                    failures.append(repr(error))

    workers = [threading.Thread(target=load) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        with _admin(server) as admin:
            result = publish(admin, TextExportOptions(checkpoint=second_checkpoint, name="tiny", repository=repository,
                                                  precision="fp32", optimize=False, gate_samples=60))
            after = served_versions(admin, list(result.versions))
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert failures == []
    assert answered[0] > 0
    assert result.versions == {"tiny_model": 2, "tiny_tokenizer": 2, "tiny_postprocess": 2, "tiny": 2}
    assert after == result.versions

    model, tokenizer, _info = load_classifier(second_checkpoint)
    with torch.inference_mode():
        rows = [model(**tokenizer([t], truncation=True, max_length=32, return_tensors="pt")).logits for t in TEXTS]
    expected = torch.softmax(torch.cat(rows), dim=-1).numpy()
    with TritonClient(server.grpc_url) as client:
        served = TextClassifier(client, "tiny").classify(TEXTS)
    np.testing.assert_allclose([[p.scores["negative"], p.scores["positive"]] for p in served], expected, atol=1e-4)


def test_a_version_that_fails_to_load_is_rolled_back(server: TritonServer, repository: Path,
                                                     second_checkpoint: Path) -> None:
    from tuneship.exporter import ServingOptions, TextExportOptions

    with _admin(server) as admin:
        before = served_versions(admin, ["tiny_model", "tiny"])
        # GPU instances cannot be created on this CPU-only server: the new version cannot load.
        broken = TextExportOptions(checkpoint=second_checkpoint, name="tiny", repository=repository, precision="fp32",
                               optimize=False, gate_samples=60, serving=ServingOptions(instance_kind="KIND_GPU"))
        with pytest.raises(PublishError, match=r"did not load and was removed: .*serving now: .*tiny_model v1"):
            publish(admin, broken)
        assert served_versions(admin, ["tiny_model", "tiny"]) == before
        assert not (repository / "tiny_model" / "2").exists()
        assert "KIND_GPU" not in (repository / "tiny_model" / "config.pbtxt").read_text(), "old config restored"
    with TritonClient(server.grpc_url) as client:
        assert len(TextClassifier(client, "tiny").classify(TEXTS)) == len(TEXTS)


def test_concurrent_publishes_into_one_repository_take_turns(server: TritonServer, repository: Path,
                                                             second_checkpoint: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from tuneship.exporter import ExportOptions, TextExportOptions

    def options(lock_timeout_s: float = 600.0) -> ExportOptions:
        return TextExportOptions(checkpoint=second_checkpoint, name="tiny", repository=repository, precision="fp32",
                             optimize=False, gate_samples=60, lock_timeout_s=lock_timeout_s)

    results: list[object] = []
    errors: list[BaseException] = []

    def run() -> None:
        with _admin(server) as admin:
            try:
                results.append(publish(admin, options()))
            except BaseException as error:
                errors.append(error)

    publishers = [threading.Thread(target=run) for _ in range(2)]
    for publisher in publishers:
        publisher.start()
    for publisher in publishers:
        publisher.join(timeout=600)
    assert not errors, errors
    versions = sorted(result.versions["tiny_model"] for result in results)  # type: ignore[attr-defined]
    assert versions == [2, 3]
    with _admin(server) as admin:
        assert served_versions(admin, ["tiny_model"])["tiny_model"] == 3
    # A writer that may not wait is told who holds the repository, and nothing is published.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time\nfrom pathlib import Path\n"
         "from tuneship.repository import repository_lock"
         f"\nwith repository_lock(Path({str(repository)!r}), what='a test holding the lock'):\n"
         "    print('held', flush=True)\n    time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        from tuneship.exporter import export_checkpoint

        with pytest.raises(RepositoryError, match=r"being written by a test holding the lock \(pid"):
            export_checkpoint(options(lock_timeout_s=0))
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert not (repository / "tiny_model" / "4").exists()
    # Published configs are readable by a server running as another user.
    assert (repository / "tiny_model" / "config.pbtxt").stat().st_mode & 0o777 == 0o644
