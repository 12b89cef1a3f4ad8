"""Fold PEFT prompt-learning models (P-tuning, prompt tuning) into a plain graph for export.

PEFT computes the virtual-token embeddings on every forward (P-tuning runs its prompt-encoder MLP
each time). They do not depend on the input, so we compute them once and store them as a constant:
the exported graph is the base model fed [virtual tokens; word embeddings], with the attention mask
and token types extended the way PEFT extends them. This is hand-written because neither torch.onnx
nor optimum knows PEFT's prompt-learning wrappers; the exporter's validation checks it against PEFT.
"""

from __future__ import annotations

from typing import Any


def is_prompt_learning(model: Any) -> bool:
    config = getattr(model, "active_peft_config", None)
    return bool(config is not None and getattr(config, "is_prompt_learning", False))


def fold_prompt(model: Any) -> Any:
    """A torch module with the PEFT model's logits, virtual tokens baked in as a constant."""
    import torch

    config = model.active_peft_config
    if config.peft_type.value not in ("P_TUNING", "PROMPT_TUNING"):
        raise ValueError(f"cannot fold {config.peft_type.value} prompts into an exported graph")
    with torch.no_grad():
        prompts = model.get_prompt(batch_size=1).detach().float()  # [1, virtual tokens, hidden]
    base = model.base_model  # the classifier with the trained head (modules_to_save) active

    class PromptFolded(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base = base
            self.config = base.config
            self.register_buffer("prompts", prompts)
            self.embeddings = base.get_input_embeddings()
            self.virtual = int(prompts.shape[1])

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            batch = input_ids.shape[0]
            virtual = self.virtual
            prompts: Any = self.prompts
            embeddings: Any = self.embeddings
            embeds = torch.cat([prompts.expand(batch, -1, -1).to(embeddings.weight.dtype), embeddings(input_ids)],
                               dim=1)
            mask = torch.cat([torch.ones(batch, virtual, dtype=attention_mask.dtype), attention_mask], dim=1)
            kwargs: dict[str, Any] = {"inputs_embeds": embeds, "attention_mask": mask}
            if token_type_ids is not None:
                kwargs["token_type_ids"] = torch.cat(
                    [torch.zeros(batch, virtual, dtype=token_type_ids.dtype), token_type_ids], dim=1)
            return self.base(**kwargs)

    return PromptFolded().eval()
