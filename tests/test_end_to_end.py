"""train -> export -> repository -> serve -> classify raw text, on a tiny randomly initialised BERT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from lanes import costs
from timings import DYNAMIC_INT8_FASTEST

from tuneship.client import TextClassifier, TritonClient
from tuneship.deploy import ServeOptions, TritonServer, scrape_metrics

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
@costs("slow")
def checkpoint(tiny_bert: Path, review_files: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tuneship.trainer import TextTrainConfig, train

    train_file, eval_file = review_files
    output = tmp_path_factory.mktemp("runs") / "tiny-sentiment"
    train(TextTrainConfig(data=str(train_file), eval_file=str(eval_file), model=str(tiny_bert), output=str(output),
                      epochs=4, learning_rate=3e-3, warmup_ratio=0.0, batch_size=16, max_length=32, logging_steps=5,
                      seed=7))
    return output


def test_served_int8_equals_what_the_exporter_measured(checkpoint: Path, tmp_path: Path) -> None:
    """The int8 graph is pre-optimized and served at basic level: Triton must compute what the gate measured."""
    import onnxruntime as ort
    from transformers import AutoTokenizer

    from tuneship.exporter import ExportOptions, export_checkpoint
    from tuneship.exporter.variants import session_options

    repository = tmp_path / "model_repository"
    report = export_checkpoint(ExportOptions(checkpoint=checkpoint, name="tiny8", repository=repository,
                                             precision="int8", force=True, gate_samples=60),
                               timing=DYNAMIC_INT8_FASTEST)
    assert report.chosen == "int8-dynamic"
    texts = ["a superb and moving film", "dull, tedious and lifeless", "x", "the cast was charming, the plot bland"]
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    session = ort.InferenceSession(str(repository / "tiny8_model" / "1" / "model.onnx"), session_options(-1))
    rows = []
    for text in texts:  # one text per call, as Triton's tokenizer model pads each batch to its own longest
        encoded = tokenizer([text], truncation=True, max_length=32, return_tensors="np")
        logits = session.run(None, {i.name: encoded[i.name].astype(np.int64) for i in session.get_inputs()})[0]
        rows.append(np.exp(logits) / np.exp(logits).sum(-1, keepdims=True))
    expected = np.concatenate(rows)

    options = ServeOptions(model_repository=repository, grpc_port=0, http_port=0, metrics_port=0)
    with TritonServer(options) as server, TritonClient(server.grpc_url) as client:
        classifier = TextClassifier(client, model="tiny8", batch_size=1)
        # One at a time: dynamic int8 scales activations per batch, so batch-mates would change the numbers.
        predictions = [classifier.classify([text])[0] for text in texts]
        labels = classifier.labels()
    served = np.array([[p.scores[label] for label in labels] for p in predictions])
    np.testing.assert_allclose(served, expected, atol=1e-5)


def test_checkpoint_follows_the_contract(checkpoint: Path) -> None:
    manifest = json.loads((checkpoint / "tuneship.json").read_text())
    assert manifest["task"] == "text-classification"
    assert manifest["labels"] == ["negative", "positive"]
    assert manifest["method"] == "full"
    assert manifest["max_length"] == 32
    assert manifest["data"]["fingerprint"].startswith("sha256:")
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    metrics = json.loads((checkpoint / "metrics.json").read_text())
    assert metrics["confusion_matrix"]["labels"] == ["negative", "positive"]
    assert sum(map(sum, metrics["confusion_matrix"]["matrix"])) == 60
    # The synthetic task is learnable: a tiny model must beat chance clearly.
    assert metrics["accuracy"] > 0.8
    for name in ("model.safetensors", "tokenizer.json", "eval.jsonl", "training_curve.png"):
        assert (checkpoint / name).is_file(), name
    assert not list(checkpoint.parent.glob(".tiny-sentiment*")), "temporary directories left behind"


def test_served_labels_equal_pytorch_predictions(checkpoint: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tuneship.exporter import ExportOptions, export_checkpoint

    repository = tmp_path / "model_repository"
    report = export_checkpoint(ExportOptions(checkpoint=checkpoint, name="tiny", repository=repository,
                                             precision="fp32"))
    assert report.validation["max_abs_diff"] < 1e-3
    assert report.versions == {"tiny_model": 1, "tiny_tokenizer": 1, "tiny_postprocess": 1, "tiny": 1}
    assert (repository / "tiny" / "export_report.json").is_file()

    texts = [json.loads(line)["text"] for line in (checkpoint / "eval.jsonl").read_text().splitlines()][:24]
    texts += ["a superb and moving film", "dull, tedious and lifeless", "x", "the " * 100]
    model = AutoModelForSequenceClassification.from_pretrained(str(checkpoint)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    import torch

    with torch.inference_mode():
        batch = tokenizer(texts, truncation=True, max_length=32, padding=True, return_tensors="pt")
        probabilities = torch.softmax(model(**batch).logits, dim=-1).numpy()
    expected = [model.config.id2label[int(i)] for i in probabilities.argmax(-1)]

    options = ServeOptions(model_repository=repository, grpc_port=0, http_port=0, metrics_port=0)
    with TritonServer(options) as server, TritonClient(server.grpc_url) as client:
        classifier = TextClassifier(client, model="tiny", batch_size=8)
        predictions = classifier.classify(texts)
        assert classifier.labels() == ["negative", "positive"]
        metrics = scrape_metrics(server.metrics_url)
    assert [p.label for p in predictions] == expected
    served = np.array([[p.scores["negative"], p.scores["positive"]] for p in predictions])
    np.testing.assert_allclose(served, probabilities, atol=1e-4)
    assert metrics.model("tiny").request_success == 4  # 28 texts in requests of 8
    assert metrics.model("tiny").inference_count == 28


METHODS = ["full", "lora", "ptuning", "prompt-tuning", "features"]


def test_every_method_is_served_with_pytorch_labels(tiny_bert: Path, review_files: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    """One server, one repository holding a classifier per trainer method; each answers like PyTorch."""
    import torch

    from tuneship.exporter import ExportOptions, export_checkpoint
    from tuneship.trainer import TextTrainConfig, load_classifier, train

    repository = tmp_path / "model_repository"
    texts = ["a superb and moving film", "dull, tedious and lifeless", "the cast was charming but the plot bland",
             "x", "the " * 60]
    expected: dict[str, np.ndarray] = {}
    fused_by_method: dict[str, str] = {}
    for method in METHODS:
        checkpoint = tmp_path / method
        train(TextTrainConfig(data=str(review_files[0]), eval_file=str(review_files[1]), model=str(tiny_bert),
                          output=str(checkpoint), method=method, epochs=2, batch_size=16, max_length=32, seed=5,
                          feature_cache=str(tmp_path / "cache")))
        name = "tiny_" + method.replace("-", "_")
        report = export_checkpoint(ExportOptions(checkpoint=checkpoint, name=name, repository=repository,
                                                 precision="fp32", gate_samples=60))
        # The fused (and, where it applies, padding-free) graph must match PyTorch for every method too.
        fused = {v["name"]: v for v in report.variants}.get("fp32-optimized")
        assert fused is not None and fused["max_abs_diff"] < 1e-4, (method, fused)
        fused_by_method[method] = fused["description"]
        model, tokenizer, _info = load_classifier(checkpoint)
        with torch.inference_mode():
            # One text per call: what Triton's tokenizer model does for a batch pads to its longest text,
            # and padding must not change the answer; comparing unpadded calls checks that too.
            rows = [model(**tokenizer([t], truncation=True, max_length=32, return_tensors="pt")).logits for t in texts]
        expected[name] = torch.softmax(torch.cat(rows), dim=-1).numpy()

    # Prompt-folded graphs have no fused embeddings to pack by; the others run without padding.
    assert [m for m, d in fused_by_method.items() if "padding removed" in d] == ["full", "lora", "features"]
    options = ServeOptions(model_repository=repository, grpc_port=0, http_port=0, metrics_port=0)
    with TritonServer(options) as server, TritonClient(server.grpc_url) as client:
        for name, probabilities in expected.items():
            predictions = TextClassifier(client, model=name).classify(texts)
            labels = TextClassifier(client, model=name).labels()
            served = np.array([[p.scores[label] for label in labels] for p in predictions])
            np.testing.assert_allclose(served, probabilities, atol=1e-4, err_msg=name)
            assert [p.label for p in predictions] == [labels[i] for i in probabilities.argmax(-1)], name
