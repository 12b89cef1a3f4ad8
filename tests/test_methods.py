"""Every fine-tuning method end to end on a tiny randomly initialised BERT: the checkpoint loads and predicts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tuneship.trainer import TextTrainConfig, TrainingError, load_classifier, train
from tuneship.trainer.evaluate_checkpoint import evaluate_checkpoint
from tuneship.trainer.text.evaluate import predict_logits

pytestmark = pytest.mark.slow


def _train(tiny_bert: Path, files: tuple[Path, Path], output: Path, method: str, **overrides: object) -> Path:
    values: dict[str, object] = {"data": str(files[0]), "eval_file": str(files[1]), "model": str(tiny_bert),
                                 "output": str(output), "method": method, "epochs": 2, "batch_size": 16,
                                 "max_length": 32, "seed": 7, "logging_steps": 5,
                                 "feature_cache": str(output.parent / "feature-cache")}
    values.update(overrides)
    train(TextTrainConfig(**values))  # type: ignore[arg-type]
    return output


@pytest.mark.parametrize("method", ["full", "lora", "ptuning", "prompt-tuning", "features"])
def test_method_checkpoint_loads_and_predicts(method: str, tiny_bert: Path, review_files: tuple[Path, Path],
                                              tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                              caplog: pytest.LogCaptureFixture) -> None:
    checkpoint = _train(tiny_bert, review_files, tmp_path / method, method)
    manifest = json.loads((checkpoint / "tuneship.json").read_text())
    metrics = json.loads((checkpoint / "metrics.json").read_text())
    assert manifest["method"] == method
    assert manifest["labels"] == ["negative", "positive"]
    assert 0 < manifest["trainable_parameters"] <= manifest["total_parameters"]
    assert metrics["train_examples_per_second"] > 0
    assert (checkpoint / "training_curve.png").stat().st_size > 1000

    # The reloaded checkpoint reproduces the metrics the training run measured.
    again = evaluate_checkpoint(checkpoint, str(review_files[1]))
    assert again["accuracy"] == pytest.approx(metrics["accuracy"])
    assert again["confusion_matrix"] == metrics["confusion_matrix"]

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_warning()  # as in a fresh `tuneship export` (training had turned warnings off)
    capfd.readouterr()
    caplog.clear()
    model, tokenizer, info = load_classifier(str(checkpoint))
    loading_output = "".join(capfd.readouterr()) + caplog.text
    assert "LOAD REPORT" not in loading_output and "newly initialized" not in loading_output, loading_output
    logits = predict_logits(model, tokenizer, ["a superb film", "a dull film"], info.max_length)

    # The manifest holds the options this method used, with the values it used (no nulls, nothing foreign).
    options = manifest["hyperparameters"]
    assert None not in options.values()
    assert ("learning_rate" in options) == (method != "features")
    assert ("lora_rank" in options) == (method == "lora")
    assert ("classifier" in options) == (method == "features")
    assert ("num_virtual_tokens" in options) == (method in ("ptuning", "prompt-tuning"))
    assert logits.shape == (2, 2) and np.isfinite(logits).all()

    if method == "lora":
        assert (checkpoint / "adapter" / "adapter_config.json").is_file()
        assert manifest["merged"] is True
        assert manifest["trainable_parameters"] < manifest["total_parameters"] / 2
    if method in ("ptuning", "prompt-tuning"):
        assert (checkpoint / "adapter" / "adapter_config.json").is_file()
        assert manifest["merged"] is False and manifest["num_virtual_tokens"] == 20
    if method == "features":
        assert (checkpoint / "classifier.safetensors").is_file()
        assert manifest["trainable_parameters"] == 2 * 32 + 2


def test_lora_merged_model_equals_adapter_model(tiny_bert: Path, review_files: tuple[Path, Path],
                                                tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    checkpoint = _train(tiny_bert, review_files, tmp_path / "lora", "lora", lora_targets="query,value,dense")
    merged, tokenizer, info = load_classifier(checkpoint)
    base = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=2)
    adapted = PeftModel.from_pretrained(base, str(checkpoint / "adapter")).eval()
    texts = ["a superb film", "the plot was dull and clumsy", "x"]
    np.testing.assert_allclose(predict_logits(merged, tokenizer, texts, info.max_length),
                               predict_logits(adapted, tokenizer, texts, info.max_length), atol=1e-5)


def test_full_fine_tuning_is_reproducible(tiny_bert: Path, review_files: tuple[Path, Path], tmp_path: Path) -> None:
    first = json.loads((_train(tiny_bert, review_files, tmp_path / "a", "full") / "training_log.json").read_text())
    second = json.loads((_train(tiny_bert, review_files, tmp_path / "b", "full") / "training_log.json").read_text())
    losses = [[e["loss"] for e in log if "loss" in e] for log in (first, second)]
    assert losses[0] == losses[1] and losses[0]


def test_prefix_tuning_on_an_encoder_is_refused_clearly(tiny_bert: Path, review_files: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="prefix-tuning needs a model that takes past_key_values"):
        _train(tiny_bert, review_files, tmp_path / "prefix", "prefix-tuning")
    assert not (tmp_path / "prefix").exists()


def test_unknown_lora_targets_are_named(tiny_bert: Path, review_files: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match=r"LoRA target modules \['q_proj'\] do not exist"):
        _train(tiny_bert, review_files, tmp_path / "lora", "lora", lora_targets="q_proj")


def test_evaluate_command_prints_and_saves_the_metrics(tiny_bert: Path, review_files: tuple[Path, Path],
                                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tuneship.cli import main

    checkpoint = _train(tiny_bert, review_files, tmp_path / "full", "full")
    code = main(["evaluate", str(checkpoint), "--data", str(review_files[1]), "--json", str(tmp_path / "m.json")])
    printed = capsys.readouterr().out
    assert code == 0
    saved = json.loads((tmp_path / "m.json").read_text())
    assert f"accuracy {saved['accuracy']:.4f}" in printed
    assert "confusion matrix" in printed and saved["examples"] == 60
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("text,label\ngood film,neutral\n")
    assert main(["evaluate", str(checkpoint), "--data", str(wrong)]) == 2
    assert "labels ['neutral'] are not labels of" in capsys.readouterr().err
