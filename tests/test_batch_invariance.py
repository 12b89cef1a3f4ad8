"""Batch invariance: the exporter measures how far a text's answer moves with its batch-mates, and the published
model's answer through the server does not depend on what it is batched with."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from lanes import costs

from tuneship.client import TritonClient
from tuneship.deploy import ServeOptions, TritonServer
from tuneship.exporter import ExportOptions, TextExportOptions, export_checkpoint

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
@costs("slow")
def auto_repository(tiny_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    checkpoint = tiny_repository.parent / "ckpt"
    repository = tmp_path_factory.mktemp("auto-repo")
    export_checkpoint(ExportOptions(checkpoint=checkpoint, name="tiny", repository=repository))
    return repository


def test_every_variant_reports_its_batch_variation(auto_repository: Path) -> None:
    report = json.loads((auto_repository / "tiny" / "export_report.json").read_text())
    variation = {v["name"]: v["batch_variation"] for v in report["variants"]}
    assert variation["fp32"] <= 1e-5 and variation["fp32-optimized"] <= 1e-5
    # Per-token activation scales: no batch-mate changes a text's numbers.
    assert variation["int8-rowwise"] <= 1e-5
    # Dynamic int8 scales activations per batch: measured, whatever it is, and never taken as invariant by name.
    assert np.isfinite(variation["int8-dynamic"]) and variation["int8-dynamic"] >= 0.0


@pytest.fixture(scope="module")
@costs("slow")
def rowwise_repository(tiny_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("rowwise-repo")
    # int8 asked for, and the invariant flavour preferred whatever its speed: int8-rowwise is published.
    export_checkpoint(TextExportOptions(checkpoint=tiny_repository.parent / "ckpt", name="tiny", repository=repository,
                                    precision="int8", invariance_margin=100.0, accuracy_threshold=100.0))
    return repository


@pytest.mark.parametrize("which", ["auto", "rowwise"])
def test_the_served_answer_does_not_depend_on_its_batch_mates(which: str, auto_repository: Path,
                                                              rowwise_repository: Path) -> None:
    repository = auto_repository if which == "auto" else rowwise_repository
    if which == "rowwise":
        assert json.loads((repository / "tiny" / "export_report.json").read_text())["chosen"] == "int8-rowwise"
    text = b"the acting was great"
    mates = [b"the story and the plot and the cast were really quite dull and boring and lifeless " * 2,
             b"superb", b"its plot was tedious"]
    with TritonServer(ServeOptions(model_repository=repository, grpc_port=0, http_port=0,
                                   metrics_port=0)) as server, TritonClient(server.grpc_url) as client:
        alone = client.infer("tiny", {"TEXT": np.array([[text]], dtype=np.object_)})["PROBABILITIES"][0]
        batched = client.infer("tiny", {"TEXT": np.array([[text], *[[m] for m in mates]],
                                                         dtype=np.object_)})["PROBABILITIES"][0]
    assert np.abs(np.asarray(alone) - np.asarray(batched)).max() <= 1e-5
