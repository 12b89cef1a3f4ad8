"""Every method's checkpoint exports to an ONNX model that matches the PyTorch (or PEFT) model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from lanes import costs
from timings import DYNAMIC_INT8_FASTEST

from tuneship.exporter import ExportError, ExportOptions, TextExportOptions, export_checkpoint
from tuneship.exporter.text.tensorrt_engine import tensorrt_unavailable
from tuneship.repository import RepositoryError
from tuneship.trainer import TextTrainConfig, load_classifier, train
from tuneship.trainer.text.evaluate import predict_logits

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("method", ["lora", "ptuning", "prompt-tuning", "features"])
def test_every_method_exports_and_validates(method: str, tiny_bert: Path, review_files: tuple[Path, Path],
                                            tmp_path: Path) -> None:
    checkpoint = tmp_path / method
    train(TextTrainConfig(data=str(review_files[0]), eval_file=str(review_files[1]), model=str(tiny_bert),
                      output=str(checkpoint), method=method, epochs=1, batch_size=16, max_length=32, seed=3,
                      feature_cache=str(tmp_path / "cache")))
    repository = tmp_path / "repo"
    report = export_checkpoint(ExportOptions(checkpoint=checkpoint, name="clf", repository=repository,
                                             precision="fp32"))
    assert report.validation["max_abs_diff"] < 1e-4
    assert report.validation["label_agreement"] == 1.0

    model, tokenizer, info = load_classifier(checkpoint)
    texts = ["a superb and moving film", "dull", "the acting was bland and the plot clumsy"]
    expected = predict_logits(model, tokenizer, texts, info.max_length, batch_size=1)
    session = ort.InferenceSession(str(repository / "clf_model" / "1" / "model.onnx"))
    for text, row in zip(texts, expected, strict=True):
        batch = tokenizer([text], return_tensors="np")
        feeds = {i.name: batch[i.name].astype(np.int64) for i in session.get_inputs()}
        np.testing.assert_allclose(session.run(["logits"], feeds)[0][0], row, atol=1e-4)


def test_drift_beyond_tolerance_is_not_published(tiny_bert: Path, review_files: tuple[Path, Path],
                                                 tmp_path: Path) -> None:
    checkpoint = tmp_path / "full"
    train(TextTrainConfig(data=str(review_files[0]), eval_file=str(review_files[1]), model=str(tiny_bert),
                      output=str(checkpoint), epochs=1, batch_size=16, max_length=32))
    repository = tmp_path / "repo"
    with pytest.raises(ExportError, match="not published: ONNX logits differ from PyTorch by up to"):
        export_checkpoint(ExportOptions(checkpoint=checkpoint, name="clf", repository=repository, tolerance=0.0))
    assert not (repository / "clf_model").exists()
    assert [p.name for p in repository.iterdir()] == []


def test_export_refuses_a_folder_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({}))
    with pytest.raises(ExportError, match=r"not a tuneship checkpoint \(tuneship.json is missing\)"):
        export_checkpoint(ExportOptions(checkpoint=tmp_path, name="clf", repository=tmp_path / "repo"))


@pytest.fixture(scope="module")
@costs("slow")
def tiny_checkpoint(tiny_bert: Path, review_files: tuple[Path, Path],
                    tmp_path_factory: pytest.TempPathFactory) -> Path:
    checkpoint = tmp_path_factory.mktemp("ckpt") / "full"
    train(TextTrainConfig(data=str(review_files[0]), eval_file=str(review_files[1]), model=str(tiny_bert),
                      output=str(checkpoint), epochs=4, learning_rate=3e-3, warmup_ratio=0.0, batch_size=16,
                      max_length=32, seed=7))
    return checkpoint


def test_auto_precision_on_cpu_measures_every_variant_and_explains_the_choice(tiny_checkpoint: Path,
                                                                              tmp_path: Path) -> None:
    report = export_checkpoint(ExportOptions(checkpoint=tiny_checkpoint, name="clf", repository=tmp_path / "repo",
                                             precision="auto", gate_samples=60))
    names = [v["name"] for v in report.variants]
    assert names[:2] == ["fp32", "fp32-optimized"]
    assert {"int8-dynamic", "int8-static"} & set(names)
    assert report.chosen in names
    chosen = next(v for v in report.variants if v["name"] == report.chosen)
    assert chosen["passed"]
    assert all(v["accuracy"] is not None and v["latency_ms"]["32"] > 0 for v in report.variants)
    fastest_passing = min((v for v in report.variants if v["passed"]), key=lambda v: v["latency_ms"]["32"])
    assert "fastest variant that passes the accuracy gate" in report.reason
    if report.chosen != fastest_passing["name"]:
        # Only a tie (within 5%) or a batch-invariant variant within the 10% invariance margin may win instead,
        # and the reason says which.
        slower = chosen["latency_ms"]["32"] / fastest_passing["latency_ms"]["32"] - 1
        assert slower <= 0.05 or ("batch-invariant" in report.reason and slower <= 0.10), report.reason
    saved = json.loads((tmp_path / "repo" / "clf" / "export_report.json").read_text())
    assert saved["chosen"] == report.chosen
    assert (tmp_path / "repo" / "clf_tokenizer" / "requirements.txt").read_text().count("tokenizers") == 1


def test_a_variant_over_the_accuracy_gate_needs_force(tiny_checkpoint: Path, tmp_path: Path) -> None:
    options = {"checkpoint": tiny_checkpoint, "name": "clf", "precision": "int8", "gate_samples": 60,
               "accuracy_threshold": -200.0}  # an impossible gate: int8 must fail it
    with pytest.raises(ExportError, match="int8 was requested but no int8 variant passes the gate"):
        export_checkpoint(TextExportOptions(repository=tmp_path / "refused", **options))  # type: ignore[arg-type]
    assert not (tmp_path / "refused" / "clf_model").exists()
    forced = export_checkpoint(
        TextExportOptions(repository=tmp_path / "forced", force=True, **options))  # type: ignore[arg-type]
    assert forced.chosen.startswith("int8")
    assert "--force" in forced.reason


def test_cpu_int8_is_the_fused_graph_quantized_and_served_as_measured(tiny_checkpoint: Path,
                                                                        tmp_path: Path) -> None:
    from tuneship.repository import parse_pbtxt

    repository = tmp_path / "repo"
    report = export_checkpoint(ExportOptions(checkpoint=tiny_checkpoint, name="clf", repository=repository,
                                             precision="int8", force=True, gate_samples=60),
                               timing=DYNAMIC_INT8_FASTEST)
    assert report.chosen == "int8-dynamic"
    model_dir = repository / "clf_model"
    ops = {node.op_type for node in onnx.load(str(model_dir / "1" / "model.onnx")).graph.node}
    # Attention fused (eager-attention export) and quantized; quantized MatMuls fused offline; the residual
    # Add + LayerNormalization kept apart (ONNX Runtime's CPU SkipLayerNormalization is the slower kernel).
    assert {"QAttention", "DynamicQuantizeMatMul", "LayerNormalization"} <= ops
    assert "SkipLayerNormalization" not in ops
    config = parse_pbtxt((model_dir / "config.pbtxt").read_text())
    assert config.optimization.graph.level == -1  # basic: ONNX Runtime must not re-fuse what was left apart
    chosen = next(v for v in report.variants if v["name"] == "int8-dynamic")
    assert chosen["description"].startswith("dynamic int8 weights per channel on the fused graph, padding removed")


def test_export_leaves_the_models_attention_implementation_as_it_was(tiny_checkpoint: Path,
                                                                        tmp_path: Path) -> None:
    from tuneship.exporter.text.onnx_export import export_onnx

    model, tokenizer, _info = load_classifier(tiny_checkpoint)
    before = model.config._attn_implementation
    export_onnx(model, tokenizer, tmp_path / "m.onnx")
    assert model.config._attn_implementation == before != "eager"


@pytest.mark.skipif(tensorrt_unavailable() is None, reason="TensorRT and a GPU present: an engine is published")
def test_gpu_target_writes_fp16_with_the_tensorrt_accelerator(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from tuneship.repository import parse_pbtxt

    repository = tmp_path / "repo"
    report = export_checkpoint(ExportOptions(checkpoint=tiny_checkpoint, name="clf", repository=repository,
                                             target="gpu", gate_samples=60))
    assert report.chosen == "fp16"
    assert f"no standalone TensorRT engine: {tensorrt_unavailable()}" in report.reason
    config = parse_pbtxt((repository / "clf_model" / "config.pbtxt").read_text())
    accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accelerator.name == "tensorrt"
    assert accelerator.parameters["precision_mode"] == "FP16"
    assert accelerator.parameters["trt_engine_cache_enable"] == "1"
    assert config.instance_group[0].kind == config.instance_group[0].KIND_GPU


def _snapshot(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture
@costs("slow")
def populated_repository(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    repository = tmp_path / "repo"
    export_checkpoint(TextExportOptions(checkpoint=tiny_checkpoint, name="clf", repository=repository,
                                    precision="fp32", optimize=False))
    return repository


def test_corrupt_weights_are_named_and_nothing_changes(tiny_checkpoint: Path, populated_repository: Path,
                                                       tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, broken)
    (broken / "model.safetensors").write_bytes(b"\x00not safetensors at all")
    before = _snapshot(populated_repository)
    with pytest.raises(ExportError, match=r"broken: cannot load the checkpoint"):
        export_checkpoint(ExportOptions(checkpoint=broken, name="clf", repository=populated_repository))
    assert _snapshot(populated_repository) == before


def test_a_path_in_the_model_name_is_refused(tiny_checkpoint: Path, populated_repository: Path) -> None:
    before = _snapshot(populated_repository)
    with pytest.raises(RepositoryError, match=r"invalid model name '\.\./escape'"):
        export_checkpoint(ExportOptions(checkpoint=tiny_checkpoint, name="../escape", repository=populated_repository))
    assert _snapshot(populated_repository) == before
    assert not (populated_repository.parent / "escape").exists()


def test_an_unsupported_architecture_is_refused(tiny_checkpoint: Path, populated_repository: Path,
                                                tmp_path: Path) -> None:
    import shutil

    from transformers import GPT2Config, GPT2ForSequenceClassification

    other = tmp_path / "gpt2"
    config = GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=30522, num_labels=2, pad_token_id=0)
    GPT2ForSequenceClassification(config).save_pretrained(str(other))
    for name in ("tuneship.json", "tokenizer.json", "tokenizer_config.json", "eval.jsonl"):
        shutil.copy2(tiny_checkpoint / name, other / name)
    before = _snapshot(populated_repository)
    with pytest.raises(ExportError, match=r"unsupported architecture 'gpt2'; the exporter supports .*bert"):
        export_checkpoint(ExportOptions(checkpoint=other, name="clf", repository=populated_repository))
    assert _snapshot(populated_repository) == before


def test_an_unknown_calibration_method_is_named(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="unknown --calibration 'histogram'; choose one of percentile, minmax"):
        export_checkpoint(TextExportOptions(checkpoint=tiny_checkpoint, repository=tmp_path / "repo",
                                        calibration="histogram"))
    assert not (tmp_path / "repo").exists()
