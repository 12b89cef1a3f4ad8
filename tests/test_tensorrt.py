"""TensorRT (`--target gpu`): profiles and tensorrt_plan configs everywhere; the engine build where TensorRT exists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tuneship.exporter.errors import ExportError
from tuneship.exporter.options import ServingOptions
from tuneship.exporter.text.model_configs import tensorrt_model_config
from tuneship.exporter.text.tensorrt_engine import ShapeProfile, default_profile, tensorrt_unavailable
from tuneship.repository import parse_pbtxt, to_pbtxt

INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


def test_default_profile_spans_triton_batches_and_the_checkpoint_length() -> None:
    profile = default_profile(max_batch_size=64, max_length=128)
    assert profile.shapes() == ((1, 1), (32, 64), (64, 128))
    assert profile.admits(64, 128) and profile.admits(1, 1)
    assert not profile.admits(65, 10) and not profile.admits(8, 129)
    assert default_profile(8, 32, opt_batch=4, opt_sequence=20).shapes()[1] == (4, 20)


@pytest.mark.parametrize(("shape", "message"), [((1, 8, 4, 1, 2, 4), "min <= opt <= max batch"),
                                                 ((0, 1, 4, 1, 2, 4), "min <= opt <= max batch"),
                                                 ((1, 2, 4, 1, 9, 4), "min <= opt <= max sequence")])
def test_inconsistent_profiles_are_refused_with_the_numbers(shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(ExportError, match=message):
        ShapeProfile(*shape)


def test_tensorrt_plan_config_is_a_gpu_model_bounded_by_the_profile() -> None:
    config = parse_pbtxt(to_pbtxt(tensorrt_model_config("m_model", INPUTS, 2, ServingOptions(max_batch_size=32),
                                                        profile_max_batch=64)))
    assert config.platform == "tensorrt_plan" and config.default_model_filename == "model.plan"
    assert config.instance_group[0].kind == config.instance_group[0].KIND_GPU
    assert [i.name for i in config.input] == INPUTS and all(list(i.dims) == [-1] for i in config.input)
    assert config.max_batch_size == 32 and list(config.output[0].dims) == [2]
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator  # the engine is TensorRT
    with pytest.raises(ValueError, match="max_batch_size 128 exceeds the engine profile's maximum batch 64"):
        tensorrt_model_config("m_model", INPUTS, 2, ServingOptions(max_batch_size=128), profile_max_batch=64)


needs_tensorrt = pytest.mark.skipif(tensorrt_unavailable() is not None,
                                    reason=f"engine build needs TensorRT and a GPU: {tensorrt_unavailable()}")


@needs_tensorrt
@pytest.mark.slow
def test_engine_matches_onnx_runtime_and_is_published_as_tensorrt_plan(tiny_repository: Path,
                                                                       tmp_path: Path) -> None:
    import onnxruntime as ort
    from transformers import AutoTokenizer

    from tuneship.exporter import ExportOptions, export_checkpoint
    from tuneship.exporter.text.tensorrt_engine import EngineSession, build_engine

    checkpoint = tiny_repository.parent / "ckpt"
    onnx_path = tiny_repository / "tiny_model" / "1" / "model.onnx"
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    encoded = tokenizer(["a superb film", "dull and far too long for what it says"], padding=True,
                        return_tensors="np")
    feeds = {name: encoded[name].astype(np.int64) for name in INPUTS}
    profile = default_profile(8, 32)
    build_engine(onnx_path, tmp_path / "model.plan", INPUTS, profile, "FP16")
    engine_logits = EngineSession(tmp_path / "model.plan", profile).run(["logits"], feeds)[0]
    onnx_logits = ort.InferenceSession(str(onnx_path)).run(["logits"], feeds)[0]
    np.testing.assert_allclose(engine_logits, onnx_logits, atol=2e-2)

    repository = tmp_path / "repo"
    report = export_checkpoint(ExportOptions(checkpoint=checkpoint, name="trt", repository=repository,
                                             target="gpu", gate_samples=60))
    assert report.chosen == "tensorrt-fp16"
    assert (repository / "trt_model" / "1" / "model.plan").is_file()
    config = parse_pbtxt((repository / "trt_model" / "config.pbtxt").read_text())
    assert config.platform == "tensorrt_plan"


@pytest.mark.slow
def test_gpu_export_publishes_the_engine_the_builder_made(tiny_repository: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The exporter's glue around TensorRT, with stand-ins for what needs TensorRT and a GPU: the builder
    "compiles" by copying the ONNX file, and the engine session runs that file with ONNX Runtime."""
    import shutil

    import onnxruntime as ort

    import tuneship.exporter.text.tensorrt_engine as engines
    from tuneship.exporter import ExportOptions, TextExportOptions, export_checkpoint

    built: dict[str, object] = {}

    def build(onnx_path: Path, plan_path: Path, input_names: list[str], profile: ShapeProfile, precision: str,
              workspace_bytes: int) -> dict[str, str]:
        built.update(source=onnx_path.name, inputs=list(input_names), profile=profile, precision=precision)
        shutil.copy2(onnx_path, plan_path)
        return {"tensorrt": "stand-in", "gpu": "no GPU", "precision": precision}

    class Session:
        def __init__(self, plan_path: Path, profile: ShapeProfile) -> None:
            self.session, self.profile = ort.InferenceSession(str(plan_path)), profile

        def run(self, names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            assert self.profile.admits(*next(iter(feeds.values())).shape), "fed outside the engine's profile"
            return self.session.run(names, feeds)  # type: ignore[no-any-return]

    monkeypatch.setattr(engines, "tensorrt_unavailable", lambda: None)
    monkeypatch.setattr(engines, "build_engine", build)
    monkeypatch.setattr(engines, "EngineSession", Session)
    checkpoint = tiny_repository.parent / "ckpt"
    repository = tmp_path / "repo"
    report = export_checkpoint(TextExportOptions(checkpoint=checkpoint, name="trt", repository=repository, target="gpu",
                                             gate_samples=60, engine_opt_batch=4))
    assert report.chosen == "tensorrt-fp16"
    assert "the TensorRT engine passes the accuracy gate" in report.reason
    assert built["source"] == "model.onnx" and built["precision"] == "FP16" and built["inputs"] == INPUTS
    assert built["profile"] == ShapeProfile(1, 4, 64, 1, 16, 32)  # max length 32; opt length half of it
    version = repository / "trt_model" / "1"
    assert sorted(p.name for p in version.iterdir()) == ["model.plan"]
    config = parse_pbtxt((repository / "trt_model" / "config.pbtxt").read_text())
    assert config.platform == "tensorrt_plan" and config.instance_group[0].kind == config.instance_group[0].KIND_GPU
    assert (repository / "trt" / "config.pbtxt").is_file()  # the ensemble around it is unchanged

    report = export_checkpoint(ExportOptions(checkpoint=checkpoint, name="trt8", repository=repository,
                                             target="gpu", precision="int8", force=True, gate_samples=60))
    assert built["source"] == "int8-static.onnx" and built["precision"] == "INT8"  # TensorRT reads QDQ scales
    assert report.chosen in ("tensorrt-int8", "int8-static")
