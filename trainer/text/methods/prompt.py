"""Prompt-learning methods (PEFT): P-tuning, prompt tuning and prefix tuning.

Only virtual-token parameters (and the classification head) are trained. The checkpoint keeps the
base classifier at its root and the adapter in `adapter/`; loaders must apply the adapter
(`tuneship.json` says `"merged": false`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tuneship.trainer.errors import TrainingError
from tuneship.trainer.text.methods.full import load_base_classifier

ADAPTER_DIR = "adapter"


def peft_config(method: str, config: Any) -> Any:
    from peft import PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, TaskType

    if method == "ptuning":
        return PromptEncoderConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=config.num_virtual_tokens,
                                   encoder_hidden_size=config.prompt_encoder_hidden_size)
    if method == "prompt-tuning":
        return PromptTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=config.num_virtual_tokens)
    if method == "prefix-tuning":
        return PrefixTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=config.num_virtual_tokens)
    raise ValueError(f"not a prompt-learning method: {method}")


def build_model(base: Path, labels: Sequence[str], config: Any) -> Any:
    from peft import get_peft_model

    model = load_base_classifier(base, labels)
    if config.method == "prefix-tuning" and not _takes_past_key_values(model):
        # PEFT only finds out in the first forward pass, deep inside the Trainer; say it up front.
        raise TrainingError(
            f"prefix-tuning needs a model that takes past_key_values; {model.config.model_type} classifiers in "
            "this transformers version do not. Use --method ptuning or --method prompt-tuning instead.")
    return get_peft_model(model, peft_config(config.method, config))


def _takes_past_key_values(model: Any) -> bool:
    import inspect

    inner = getattr(model, model.base_model_prefix, model)
    return "past_key_values" in inspect.signature(inner.forward).parameters


def save(model: Any, directory: Path) -> dict[str, Any]:
    trainable, total = model.get_nb_trainable_parameters()
    model.save_pretrained(str(directory / ADAPTER_DIR))
    # The base classifier (its head is replaced by the adapter's trained copy when loaded).
    model.get_base_model().save_pretrained(str(directory), safe_serialization=True)
    return {"adapter": ADAPTER_DIR, "merged": False, "trainable_parameters": int(trainable),
            "total_parameters": int(total), "num_virtual_tokens": int(model.peft_config["default"].num_virtual_tokens)}
