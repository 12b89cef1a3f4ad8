"""Padding removal: the packed graph computes what the padded one does, on any mix of lengths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from lanes import costs

from tuneship.exporter.text.token_packing import pack_tokens, pack_tokens_file

INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
TEXTS = ["a superb and moving film with a cast at the top of its game", "dull", "x",
         "the plot was clumsy, the acting bland, and the ending far too long for what it had to say"]


@pytest.fixture(scope="module")
@costs("slow")
def graphs(tiny_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The tiny checkpoint's plain export, its fused graph, and the fused graph packed."""
    from tuneship.exporter.variants import optimize_transformer

    folder = tmp_path_factory.mktemp("packing")
    plain = tiny_repository / "tiny_model" / "1" / "model.onnx"
    fused = optimize_transformer(plain, folder / "fused.onnx", "bert", num_heads=2, hidden_size=32)
    assert pack_tokens_file(fused, folder / "packed.onnx")
    return plain, fused, folder / "packed.onnx"


def _feeds(tokenizer: object, texts: list[str], **kwargs: object) -> dict[str, np.ndarray]:
    encoded = tokenizer(texts, truncation=True, max_length=32, return_tensors="np", **kwargs)  # type: ignore[operator]
    return {name: encoded[name].astype(np.int64) for name in INPUTS}


@pytest.mark.parametrize("case", ["mixed lengths", "padded to the maximum", "one text", "no padding"])
def test_packed_graph_matches_the_padded_one(graphs: tuple[Path, Path, Path], tiny_repository: Path,
                                              case: str) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_repository.parent / "ckpt"))
    feeds = {"mixed lengths": lambda: _feeds(tokenizer, TEXTS, padding=True),
             "padded to the maximum": lambda: _feeds(tokenizer, TEXTS, padding="max_length"),
             "one text": lambda: _feeds(tokenizer, TEXTS[:1]),
             "no padding": lambda: _feeds(tokenizer, ["dull film", "bad plot"], padding=True)}[case]()
    _plain, fused, packed = graphs
    expected = ort.InferenceSession(str(fused)).run(["logits"], feeds)[0]
    actual = ort.InferenceSession(str(packed)).run(["logits"], feeds)[0]
    np.testing.assert_allclose(actual, expected, atol=1e-5)


def test_token_wise_operators_run_on_two_dimensional_rows(graphs: tuple[Path, Path, Path]) -> None:
    _plain, _fused, packed = graphs
    model = onnx.load(str(packed))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("NonZero") == 1  # the real-token positions are found once
    assert ops.count("ScatterND") == ops.count("Attention") + 1  # back to padded for each attention and the pooler
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    assert matmuls and all(n.input[0].endswith("/packed") for n in matmuls)


def test_a_graph_without_fused_embeddings_is_left_alone(graphs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    plain, _fused, _packed = graphs
    model = onnx.load(str(plain))
    before = model.SerializeToString()
    assert not pack_tokens(model)
    assert model.SerializeToString() == before
    assert not pack_tokens_file(plain, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()
