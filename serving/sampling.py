"""Choosing one request's next token from its row of a batched step's logits: greedy, or temperature / top-k /
top-p sampling with the request's own seeded generator, a repetition penalty, a minimum length, and the grammar
mask of a constrained request. Rows never share state: a row's answer does not depend on its batch-mates."""

from __future__ import annotations

from typing import Any

import numpy as np

from .constraints import GrammarState
from .params import SamplingParams


class TokenChooser:
    """One request's token choice; the engine calls `choose` then `accept` once per step."""

    def __init__(self, params: SamplingParams, prompt: list[int], eos: set[int],
                 grammar: GrammarState | None = None) -> None:
        self.params = params
        self.eos = eos
        self.grammar = grammar
        self.rng = np.random.default_rng(params.random_seed)
        self.seen = set(prompt)
        self.generated = 0

    def choose(self, logits: np.ndarray[Any, Any]) -> int:
        params = self.params
        plain = params.greedy and params.repetition_penalty == 1.0 and self.grammar is None
        if plain and self.generated >= params.min_tokens:
            return int(np.argmax(logits))  # plain greedy: no copy of the 49k scores to adjust
        scores = logits.astype(np.float32, copy=True)
        if params.repetition_penalty != 1.0 and self.seen:
            index = np.fromiter(self.seen, dtype=np.int64)
            index = index[index < scores.size]
            picked = scores[index]
            with np.errstate(over="ignore"):  # a huge penalty drives a score to -inf, as it should
                scores[index] = np.where(picked > 0, picked / params.repetition_penalty,
                                         picked * params.repetition_penalty).astype(np.float32)
        if self.grammar is not None:
            allowed = self.grammar.allowed()
            if self.generated < params.min_tokens and not _only_eos(allowed, self.eos):
                allowed[list(self.eos)] = False  # the grammar may end here, but the answer is still short
            scores[:allowed.size][~allowed] = -np.inf
            scores[allowed.size:] = -np.inf
        elif self.generated < params.min_tokens:
            scores[list(self.eos)] = -np.inf
        if params.greedy:
            return int(np.argmax(scores))
        scores /= params.temperature
        if 0 < params.top_k < scores.size:
            cut = np.partition(scores, -params.top_k)[-params.top_k]
            scores[scores < cut] = -np.inf
        probabilities = np.exp(scores - scores.max())
        probabilities /= probabilities.sum()
        if params.top_p < 1.0:
            order = np.argsort(-probabilities)
            cumulative = np.cumsum(probabilities[order])
            keep = order[:int(np.searchsorted(cumulative, params.top_p)) + 1]
            mask = np.zeros_like(probabilities)
            mask[keep] = probabilities[keep]
            probabilities = mask / mask.sum()
        return int(self.rng.choice(probabilities.size, p=probabilities))

    def accept(self, token: int) -> None:
        """`token` was chosen (an end marker included: the grammar sees it too)."""
        if self.grammar is not None:
            self.grammar.advance(token)
        if token not in self.eos:
            self.generated += 1
            self.seen.add(token)


def _only_eos(allowed: np.ndarray[Any, Any], eos: set[int]) -> bool:
    ends = [t for t in eos if t < allowed.size]
    return bool(allowed[ends].any()) and int(allowed.sum()) == int(allowed[ends].sum())
