"""What differs by encoder family, in one table (not `if model_type == ...` branches)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Architecture:
    lora_targets: tuple[str, ...]
    # ONNX Runtime transformer-optimizer model type, for the exporter's fusions.
    fusion_model_type: str


ARCHITECTURES: dict[str, Architecture] = {
    # All attention and feed-forward projections: on MiniLM / rotten-tomatoes this closes the gap to full
    # fine-tuning (0.837 vs 0.840) where query+value alone stays 2.3 points under (BENCHMARKS.md).
    "bert": Architecture(lora_targets=("query", "key", "value", "dense"), fusion_model_type="bert"),
    "roberta": Architecture(lora_targets=("query", "key", "value", "dense"), fusion_model_type="bert"),
    "xlm-roberta": Architecture(lora_targets=("query", "key", "value", "dense"), fusion_model_type="bert"),
    "distilbert": Architecture(lora_targets=("q_lin", "v_lin"), fusion_model_type="bert"),
    "electra": Architecture(lora_targets=("query", "value"), fusion_model_type="bert"),
    "deberta-v2": Architecture(lora_targets=("query_proj", "value_proj"), fusion_model_type="bert"),
    "mpnet": Architecture(lora_targets=("q", "v"), fusion_model_type="bert"),
}


def architecture(model_type: str) -> Architecture | None:
    return ARCHITECTURES.get(model_type)
