"""What an instruction-tuned model is worth: eval loss and perplexity, and, where the answers come from a small
closed set (a classifier that answers in words), the exact-match accuracy of its greedy answers."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from tuneship.trainer.instruct.data import Conversation

_WORD = re.compile(r"[a-z0-9]+")


def normalise(answer: str) -> str:
    """The first word of an answer, lower-cased, without punctuation: 'Positive.' and 'positive' match."""
    words = _WORD.findall(answer.lower())
    return words[0] if words else ""


def prompt_ids(tokenizer: Any, conversation: Conversation) -> list[int]:
    """The chat template applied to the prompt messages, ready for the assistant's answer."""
    encoded = tokenizer.apply_chat_template(conversation.prompt, add_generation_prompt=True, return_dict=True)
    return list(encoded["input_ids"])


def greedy_answers(model: Any, tokenizer: Any, conversations: Sequence[Conversation], max_new_tokens: int,
                   batch_size: int = 16, progress: str | None = None) -> list[str]:
    """Greedy answers of a PyTorch model, batched with left padding (what a decoder-only model needs);
    `progress` names the loop for a bar (a terminal) or a few ETA lines (a log): 200 prompts take minutes."""
    import torch

    from tuneship.trainer.progress import CountProgress

    shown = CountProgress(progress, len(conversations)) if progress else None

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    answers: list[str] = []
    model.eval()
    for start in range(0, len(conversations), batch_size):
        prompts = [prompt_ids(tokenizer, c) for c in conversations[start:start + batch_size]]
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=pad)
        for row in out[:, width:].tolist():
            answers.append(tokenizer.decode(row, skip_special_tokens=True).strip())
        if shown is not None:
            shown.update(len(answers))
    if shown is not None:
        shown.close()
    return answers


def exact_match(answers: Sequence[str], conversations: Sequence[Conversation]) -> float:
    hits = sum(normalise(a) == normalise(c.answer) for a, c in zip(answers, conversations, strict=True))
    return hits / len(conversations) if conversations else 0.0


def perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 50 else float("inf")


def format_instruct_metrics(metrics: dict[str, Any]) -> str:
    lines = [f"eval loss {metrics['eval_loss']:.4f}   perplexity {metrics['perplexity']:.2f}   "
             f"({metrics['eval_examples']} conversations)"]
    if "exact_match_after" in metrics:
        lines.append(f"exact match of greedy answers on {metrics['exact_match_examples']} held-out prompts: "
                     f"{metrics['exact_match_before']:.3f} before fine-tuning -> {metrics['exact_match_after']:.3f} "
                     f"after ({100 * (metrics['exact_match_after'] - metrics['exact_match_before']):+.1f} points)")
    return "\n".join(lines)
