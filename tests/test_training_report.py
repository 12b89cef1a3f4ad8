"""What a training run reports: the manifest's resolved options, the single-class warning."""

from __future__ import annotations

import json


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
