"""What a training run reports: the manifest's resolved options, the single-class warning."""

from __future__ import annotations

import json

import pytest


def test_the_manifest_keeps_the_options_a_method_used_with_defaults_resolved() -> None:
    from tuneship.trainer.config import TrainConfig, resolved_hyperparameters

    lora = resolved_hyperparameters(TrainConfig(method="lora"), {"learning_rate": 1e-3, "lora_targets": "query,value",
                                                                 "logging_steps": 5, "eval_steps": "epoch"})
    assert lora["learning_rate"] == 1e-3 and lora["lora_targets"] == "query,value" and lora["logging_steps"] == 5
    assert None not in lora.values()
    assert "classifier" not in lora and "num_virtual_tokens" not in lora
    features = resolved_hyperparameters(TrainConfig(method="features"), {"feature_cache": "/c"})
    assert features["feature_cache"] == "/c" and features["classifier"] == "logreg"
    assert not {"learning_rate", "lora_rank", "epochs", "num_virtual_tokens"} & set(features)
    json.dumps(lora)


def test_a_model_that_answers_one_class_is_flagged() -> None:
    from tuneship.trainer.run import single_class_warning

    assert "'pos' for all 4 eval texts" in single_class_warning([1, 1, 1, 1], ["neg", "pos"])
    assert single_class_warning([0, 1, 1, 1], ["neg", "pos"]) == ""


def test_a_long_answer_loop_shows_its_eta_in_a_log_and_a_bar_on_a_terminal() -> None:
    """Measuring 200 greedy answers takes minutes: a log gets a few `done/total, ETA` lines, not silence."""
    import io

    from tuneship.trainer.progress import CountProgress

    log = io.StringIO()
    shown = CountProgress("base model's answers", 200, stream=log, interactive=False)
    for done in range(16, 201, 16):
        shown.update(done)
    shown.update(200)
    shown.close()
    lines = log.getvalue().splitlines()
    assert 3 <= len(lines) <= 6 and all("base model's answers:" in line for line in lines), lines
    assert "ETA" in lines[0] and lines[-1].startswith("   base model's answers: 200/200 in")
    terminal = io.StringIO()
    bar = CountProgress("answers", 10, stream=terminal, interactive=True)
    bar.update(5)
    bar.close()
    assert "answers" in terminal.getvalue() and "\r" in terminal.getvalue()  # tqdm's bar, redrawn in place


def test_transformers_bars_are_off_when_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import warnings

    import transformers.modeling_gguf_pytorch_utils as gguf_reader
    from transformers.utils import logging as transformers_logging

    from tuneship.trainer.instruct.base_model import _bars_only_on_a_terminal

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    original = gguf_reader.tqdm
    # Enabled to start with, whatever earlier tests did (tuneship's CLI turns the hub's bars off off a terminal;
    # the hub then warns when transformers turns its own back on: not what this test is about).
    before = transformers_logging.is_progress_bar_enabled()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Cannot enable progress bars")
        transformers_logging.enable_progress_bar()
        try:
            with _bars_only_on_a_terminal():
                assert not transformers_logging.is_progress_bar_enabled()
                assert gguf_reader.tqdm([1, 2], file=sys.stderr).disable  # the GGUF reader's own tqdm, silenced
            assert gguf_reader.tqdm is original and transformers_logging.is_progress_bar_enabled()
        finally:
            if not before:
                transformers_logging.disable_progress_bar()


def test_the_libraries_bars_are_off_in_a_training_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """datasets' map bars (trl prepares the instruct data with them) and transformers' weight-loading bars are
    off while training writes to a log, and as they were afterwards (on, or off when something else turned them
    off: the hub's setting can keep them off whatever datasets is told)."""
    import sys
    import warnings

    import datasets
    from transformers.utils import logging as transformers_logging

    from tuneship.trainer.run import library_bars_only_on_a_terminal

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Cannot enable progress bars")
        transformers_logging.enable_progress_bar()
        datasets.enable_progress_bars()
        before = transformers_logging.is_progress_bar_enabled(), datasets.is_progress_bar_enabled()
        with library_bars_only_on_a_terminal():
            assert not transformers_logging.is_progress_bar_enabled()
            assert not datasets.is_progress_bar_enabled()
        assert (transformers_logging.is_progress_bar_enabled(), datasets.is_progress_bar_enabled()) == before
