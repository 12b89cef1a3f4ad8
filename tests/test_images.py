"""Image classification end to end with real parts: ImageNet backbones, the LFW faces subset, ONNX Runtime and the
embedded Triton server serving raw image bytes."""

from __future__ import annotations

import io
import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from lanes import costs
from servers import running_server

from tuneship.client import ImageClassifier, InvalidInputError, TritonClient
from tuneship.client.images import encode_png
from tuneship.deploy import TritonServer
from tuneship.exporter import ExportOptions, export_checkpoint
from tuneship.trainer import DataError, ImageTrainConfig, train
from tuneship.trainer.image.backbones import BACKBONES, backbone_spec, load_pretrained
from tuneship.trainer.image.data import load_images
from tuneship.trainer.image.preprocessing import PreprocessSpec, decode, preprocess
from tuneship.trainer.image.training import load_image_classifier

SKIMAGE_DATA = Path(__import__("importlib.util").util.find_spec("skimage").submodule_search_locations[0]) / "data"
IMAGENET_CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_backbone_loads_every_imagenet_weight_and_recognises_a_cat(name: str) -> None:
    import torch

    spec = backbone_spec(name)
    backbone = load_pretrained(spec, 224).eval()
    state = torch.load(str(spec.weights()), map_location="cpu", weights_only=True)
    weight = state.get("classifier.1.weight", state.get("_fc.weight"))
    bias = state.get("classifier.1.bias", state.get("_fc.bias"))
    pixels = preprocess((SKIMAGE_DATA / "chelsea.png").read_bytes(), PreprocessSpec.for_size(224, spec.mean, spec.std))
    with torch.inference_mode():
        features = backbone(torch.from_numpy(pixels[None])).mean(dim=(2, 3))
        top5 = set((features @ weight.T + bias).topk(5).indices[0].tolist())
    assert top5 & IMAGENET_CATS, f"{name}: top-5 ImageNet classes {top5} hold no cat"


def test_client_png_encoder_round_trips_through_the_served_decoder() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (9, 5), dtype=np.uint8)
    assert np.array_equal(np.asarray(decode(encode_png(rgb))), rgb)
    assert np.array_equal(np.asarray(decode(encode_png(grey)))[:, :, 0], grey)
    with pytest.raises(InvalidInputError, match=r"\[H, W\]"):
        encode_png(np.zeros((2, 2, 2), dtype=np.uint8))


def test_bad_images_are_named_with_their_reason_and_nothing_is_written(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for label in ("cat", "dog"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "data" / label / f"{i}.png").write_bytes(_png(rng.integers(0, 256, (40, 40, 3), np.uint8)))
    (tmp_path / "data" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "data" / "dog" / "notes.txt").write_text("a dog", encoding="utf-8")
    output = tmp_path / "checkpoint"
    with pytest.raises(DataError) as caught:
        train(ImageTrainConfig(task="image-classification", data=str(tmp_path / "data"), output=str(output),
                          image_size=32))
    message = str(caught.value)
    assert "2 of 8 images cannot be used" in message
    assert "cat/broken.jpg" in message and "dog/notes.txt" in message and "not an image" in message
    assert not output.exists() and not list(tmp_path.glob(".checkpoint*"))

    (tmp_path / "data" / "cat" / "broken.jpg").unlink()
    (tmp_path / "data" / "dog" / "notes.txt").unlink()
    (tmp_path / "data" / "dog" / "tiny.png").write_bytes(_png(np.zeros((8, 8), np.uint8)))
    with pytest.warns(UserWarning, match="side under 32 pixels"):
        data = load_images(str(tmp_path / "data"))
    assert data.label_counts() == {"cat": 3, "dog": 4}

    # Checked files are read again when used, not held in memory (a folder of photos may not fit).
    assert all(e.content is None and e.path is not None for e in data.examples)
    first = data.examples[0]
    assert data.images[0] == first.path.read_bytes() and len(data.images[:2]) == 2
    first.path.unlink()
    with pytest.raises(DataError, match=r"cannot read .* readable when the data was checked"):
        data.images[0]

    table = tmp_path / "images.csv"
    table.write_text("path,label\ndata/cat/0.png,cat\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"images.csv:2: needs columns 'image' and 'label'"):
        load_images(str(table))


@pytest.fixture(scope="module")
@costs("slow")
def faces_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Frozen MobileNetV2 features + logistic regression on the 200 LFW face / non-face patches, 64px."""
    output = tmp_path_factory.mktemp("images") / "faces"
    result = train(ImageTrainConfig(task="image-classification", output=str(output), image_size=64,
                               feature_cache=str(output.parent / "cache")))
    assert result.metrics["accuracy"] >= 0.85, result.metrics  # frozen ImageNet features separate faces well
    return output


@pytest.fixture(scope="module")
@costs("slow")
def faces_repository(faces_checkpoint: Path) -> Path:
    repository = faces_checkpoint.parent / "repository"
    export_checkpoint(ExportOptions(checkpoint=faces_checkpoint, name="faces", repository=repository,
                                    accuracy_threshold=100.0))  # any variant may win; the tests check the served one
    return repository


@pytest.fixture(scope="module")
@costs("integration")
def server(faces_repository: Path) -> Iterator[TritonServer]:
    with running_server(faces_repository) as running:
        yield running


def test_evaluate_command_scores_an_image_checkpoint_on_a_folder(faces_checkpoint: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from tuneship.cli import main

    for row in (faces_checkpoint / "eval.jsonl").read_text(encoding="utf-8").splitlines():
        item = json.loads(row)
        target = tmp_path / item["label"] / Path(item["image"]).name
        target.parent.mkdir(exist_ok=True)
        target.write_bytes((faces_checkpoint / item["image"]).read_bytes())
    assert main(["evaluate", str(faces_checkpoint), "--data", str(tmp_path), "--json", str(tmp_path / "m.json")]) == 0
    saved = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    trained = json.loads((faces_checkpoint / "metrics.json").read_text(encoding="utf-8"))
    assert saved["accuracy"] == trained["accuracy"]  # the same 40 held-out images, the same answers
    assert "accuracy" in capsys.readouterr().out


def test_checkpoint_holds_the_whole_classifier_and_its_preprocessing(faces_checkpoint: Path) -> None:
    _model, manifest = load_image_classifier(faces_checkpoint)
    assert manifest["task"] == "image-classification" and manifest["method"] == "features"
    assert manifest["preprocessing"]["image_size"] == 64 and manifest["labels"] == ["face", "not-face"]
    assert (faces_checkpoint / "training_curve.png").is_file()
    assert len(list((faces_checkpoint / "eval_images").iterdir())) == 40
    assert manifest["trainable_parameters"] == 2 * 1280 + 2  # only the linear head was fitted


def test_served_preprocessing_and_answers_equal_the_trainers(faces_repository: Path, server: TritonServer) -> None:
    import onnxruntime as ort

    version = max(int(p.name) for p in (faces_repository / "faces_model").iterdir() if p.name.isdigit())
    spec = PreprocessSpec.from_dict(json.loads(
        (faces_repository / "faces_preprocess" / "1" / "preprocessing.json").read_text(encoding="utf-8")))
    images = [(SKIMAGE_DATA / name).read_bytes() for name in ("chelsea.png", "rocket.jpg", "coffee.png")]
    local = np.stack([preprocess(data, spec) for data in images])
    with TritonClient(server.grpc_url) as client:
        batch = np.empty((len(images), 1), dtype=np.object_)
        batch[:, 0] = images
        served = client.infer("faces_preprocess", {"IMAGE": batch})["pixel_values"]
        assert np.array_equal(served, local)  # bit for bit: the same code decodes, resizes and normalises
        predictions = ImageClassifier(client, "faces").classify(images)
    session = ort.InferenceSession(str(faces_repository / "faces_model" / str(version) / "model.onnx"))
    logits = session.run(None, {"pixel_values": local})[0]
    expected = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    got = np.array([[p.scores["face"], p.scores["not-face"]] for p in predictions])
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_classifier_takes_paths_bytes_and_arrays_alike(server: TritonServer) -> None:
    from PIL import Image

    path = SKIMAGE_DATA / "astronaut.png"
    array = np.asarray(Image.open(path).convert("RGB"))
    with TritonClient(server.grpc_url) as client:
        classifier = ImageClassifier(client, "faces", batch_size=2)
        by_path, by_bytes, by_array = classifier.classify([str(path), path.read_bytes(), array])
        assert classifier.labels() == ["face", "not-face"]
        with pytest.raises(InvalidInputError, match="image 1: cannot read"):
            classifier.classify([str(path), str(path.parent / "missing.png")])
    assert by_path == by_bytes
    assert by_array.label == by_path.label and by_array.score == pytest.approx(by_path.score, abs=1e-6)


def _refused(server: TritonServer) -> dict[str, float]:
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("tuneship_images_refused_total{"):
            reason = line.split('reason="')[1].split('"')[0]
            counts[reason] = counts.get(reason, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


def test_a_bad_or_huge_image_fails_only_its_own_request(server: TritonServer) -> None:
    good = (SKIMAGE_DATA / "coffee.png").read_bytes()
    huge = encode_png(np.zeros((7000, 7000), dtype=np.uint8))  # 49 megapixels, a few kB compressed
    before = _refused(server)
    answers: dict[str, object] = {}

    def call(key: str, image: bytes) -> None:
        with TritonClient(server.grpc_url) as client:
            try:
                answers[key] = ImageClassifier(client, "faces").classify([image])[0]
            except InvalidInputError as error:
                answers[key] = error

    threads = [threading.Thread(target=call, args=(f"good{i}", good)) for i in range(4)]
    threads += [threading.Thread(target=call, args=("garbage", b"GIF89a but not really")),
                threading.Thread(target=call, args=("huge", huge))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    good_answers = {str(answers[f"good{i}"]) for i in range(4)}
    assert len(good_answers) == 1 and "Prediction" in good_answers.pop()
    assert isinstance(answers["garbage"], InvalidInputError) and "IMAGE row 0" in str(answers["garbage"])
    assert isinstance(answers["huge"], InvalidInputError) and "megapixel limit" in str(answers["huge"])
    after = _refused(server)
    assert after.get("unreadable", 0) - before.get("unreadable", 0) == 1
    assert after.get("too_large", 0) - before.get("too_large", 0) == 1


def test_infer_command_classifies_image_files(server: TritonServer, capsys: pytest.CaptureFixture[str]) -> None:
    from tuneship.cli import main

    code = main(["infer", "--url", server.grpc_url, "--model", "faces", "--json",
                 str(SKIMAGE_DATA / "chelsea.png"), str(SKIMAGE_DATA / "camera.png")])
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [Path(r["image"]).name for r in rows] == ["chelsea.png", "camera.png"]
    assert all(r["label"] in ("face", "not-face") and 0.5 <= r["score"] <= 1.0 for r in rows)


@pytest.mark.slow  # trains or exports in its own body
@pytest.mark.parametrize("method", ["full", "lora"])
def test_fine_tuning_methods_write_a_merged_checkpoint_that_exports(method: str, tmp_path: Path) -> None:
    output = tmp_path / method
    result = train(ImageTrainConfig(task="image-classification", method=method, output=str(output), image_size=48,
                               max_steps=2, batch_size=16, max_train_samples=64, max_eval_samples=16))
    assert result.metrics["steps"] == 2
    _model, manifest = load_image_classifier(output)
    assert manifest["method"] == method and manifest["merged"] is True
    log = json.loads((output / "training_log.json").read_text(encoding="utf-8"))
    assert any("loss" in entry for entry in log)
    if method == "lora":
        assert manifest["hyperparameters"]["lora_rank"] == 8
        # rank-8 adapters on the 34 pointwise convolutions and the head: a small share of the 2.2M weights
        assert 100_000 < manifest["trainable_parameters"] < 200_000 < manifest["total_parameters"]
    else:
        assert manifest["trainable_parameters"] == manifest["total_parameters"]
    report = export_checkpoint(ExportOptions(checkpoint=output, name=f"faces_{method}",
                                             repository=tmp_path / "repository", precision="fp32"))
    assert report.chosen == "fp32" and report.validation["max_abs_diff"] < 1e-3


@pytest.mark.slow
def test_killed_image_fine_tuning_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import kill_at_first_checkpoint

    output, work = tmp_path / "run", tmp_path / ".run.work"
    command = [sys.executable, "-m", "tuneship", "train", "--task", "image-classification", "--method", "full",
               "--output", str(output), "--image-size", "48", "--max-steps", "40", "--eval-steps", "4",
               "--batch-size", "8", "--max-train-samples", "64", "--max-eval-samples", "16",
               "--feature-cache", str(tmp_path / "cache")]
    killed_at = kill_at_first_checkpoint(command, work)
    assert not output.exists()
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming from {work / f'checkpoint-{killed_at}'}" in resumed.stdout
    assert json.loads((output / "metrics.json").read_text(encoding="utf-8"))["steps"] == 40
    load_image_classifier(output)  # the resumed run's checkpoint is whole


@pytest.mark.slow  # trains or exports in its own body
def test_efficientnet_int8_keeps_its_answers_because_the_head_stays_fp32(tmp_path: Path) -> None:
    checkpoint = tmp_path / "efficientnet"
    train(ImageTrainConfig(task="image-classification", model="efficientnet_lite0", output=str(checkpoint),
                      image_size=64, feature_cache=str(tmp_path / "cache")))
    report = export_checkpoint(ExportOptions(checkpoint=checkpoint, name="eff", repository=tmp_path / "repository",
                                             accuracy_threshold=100.0))
    variants = {v["name"]: v for v in report.variants}
    assert variants["fp32"]["max_abs_diff"] < 1e-4
    # With the linear head quantized too, every held-out image got the same class (agreement 45%).
    assert variants["int8-static"]["label_agreement"] >= 0.9


def test_bench_and_tune_send_images_to_an_image_classifier(faces_checkpoint: Path, faces_repository: Path,
                                                            server: TritonServer, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from tuneship.cli import main
    from tuneship.repository import parse_pbtxt
    from tuneship.tuning import TuneOptions, tune

    images = faces_checkpoint / "eval_images"
    assert main(["bench", "--url", server.grpc_url, "--model", "faces", "--images", str(images), "--concurrency",
                 "1,2", "--window", "0.3", "--max-windows", "3", "--output", str(tmp_path / "bench")]) == 0
    rows = json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))
    assert [r["concurrency"] for r in rows] == [1, 2] and all(r["errors"] == 0 and r["requests"] > 0 for r in rows)
    assert main(["bench", "--url", server.grpc_url, "--model", "faces", "--window", "0.3"]) == 2
    assert "takes images: pass --images" in capsys.readouterr().err
    assert main(["bench", "--url", server.grpc_url, "--model", "faces", "--images", str(images),
                 "--stream-interval-ms", "0"]) == 2
    assert "--stream-interval-ms: for a generator only; model 'faces' is a classifier" in capsys.readouterr().err

    repository = tmp_path / "repository"
    shutil.copytree(faces_repository, repository)
    report = tune(TuneOptions(model="faces", latency_budget_ms=10_000, repository=repository, concurrency=2,
                              window_s=0.3, max_batch_sizes=(8,), queue_delays_us=(0,), instance_counts=(1,),
                              intra_op_threads=(1,), texts=[p.read_bytes() for p in sorted(images.iterdir())]))
    assert report.chosen is not None and all(not t.note and t.errors == 0 for t in report.trials)
    chosen = report.chosen.candidate
    preprocess = parse_pbtxt((repository / "faces_preprocess" / "config.pbtxt").read_text(encoding="utf-8"))
    assert preprocess.max_batch_size == chosen.max_batch_size


@pytest.mark.slow  # trains or exports in its own body
def test_gpu_target_publishes_fp16_on_a_gpu_instance_with_tensorrt(faces_checkpoint: Path, tmp_path: Path) -> None:
    from tritonclient.grpc import model_config_pb2 as mc

    from tuneship.repository import parse_pbtxt

    report = export_checkpoint(ExportOptions(checkpoint=faces_checkpoint, name="faces_gpu", target="gpu",
                                             repository=tmp_path / "repository"))
    assert report.chosen == "fp16" and report.reason.startswith("GPU target: fp16 passes")
    config = parse_pbtxt((tmp_path / "repository" / "faces_gpu_model" / "config.pbtxt").read_text(encoding="utf-8"))
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    [accelerator] = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"
