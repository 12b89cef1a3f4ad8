"""LoRA (PEFT): low-rank updates on the attention projections; the head is trained in full.

The checkpoint keeps the adapter (`adapter/`) and, at its root, the merged model, so the exporter
and any Hugging Face loader see a plain model with the adapter folded in.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tuneship.trainer.errors import TrainingError
from tuneship.trainer.text.architectures import architecture
from tuneship.trainer.text.methods.full import load_base_classifier

ADAPTER_DIR = "adapter"


def target_modules(model_type: str, override: str | None) -> list[str]:
    if override:
        return [name.strip() for name in override.split(",") if name.strip()]
    known = architecture(model_type)
    if known is None:
        raise TrainingError(
            f"no default LoRA target modules for model type {model_type!r}; pass --lora-targets (e.g. query,value)")
    return list(known.lora_targets)


def build_model(base: Path, labels: Sequence[str], config: Any) -> Any:
    from peft import LoraConfig, TaskType, get_peft_model

    model = load_base_classifier(base, labels)
    targets = target_modules(model.config.model_type, config.lora_targets)
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in present]
    if missing:
        raise TrainingError(f"LoRA target modules {missing} do not exist in {base} (model type "
                            f"{model.config.model_type}); choose with --lora-targets")
    lora = LoraConfig(task_type=TaskType.SEQ_CLS, r=config.lora_rank, lora_alpha=config.lora_alpha,
                      lora_dropout=config.lora_dropout, target_modules=targets)
    return get_peft_model(model, lora)


def save(model: Any, directory: Path) -> dict[str, Any]:
    trainable, total = model.get_nb_trainable_parameters()
    model.save_pretrained(str(directory / ADAPTER_DIR))
    merged = model.merge_and_unload()
    merged.save_pretrained(str(directory), safe_serialization=True)
    return {"adapter": ADAPTER_DIR, "merged": True, "trainable_parameters": int(trainable),
            "total_parameters": int(total)}
