"""Constrained answers inside the batch: each constrained row carries a grammar state (llguidance's matcher, what
onnxruntime-genai's guidance runs too) whose token mask is applied to that row's logits in the batched step, as
vLLM and SGLang do. Plain, constrained, adapter and session rows share every decode step.

A grammar is compiled once per request (a list of answers becomes a Lark grammar of string literals, a regular
expression and a JSON schema are llguidance's own formats); a grammar llguidance refuses is the caller's error,
named by its field before anything is generated.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from .params import Constraint, InvalidParams


class ConstraintNotFollowed(ValueError):
    """No token of this model can continue the request's constraint: the caller's error, found while generating."""


def grammar_of(constraint: Constraint) -> str:
    """llguidance's grammar for a constraint."""
    import llguidance

    if constraint.kind == "guided_choice":
        # String literals, JSON-escaped: any answer is matched literally, whatever characters it holds.
        return llguidance.LLMatcher.grammar_from_lark("start: " + " | ".join(json.dumps(c) for c in constraint.value))
    if constraint.kind == "guided_regex":
        return llguidance.LLMatcher.grammar_from_regex(constraint.value)
    if constraint.kind == "guided_grammar":
        return llguidance.LLMatcher.grammar_from_lark(constraint.value)
    # Compact JSON unless the schema asks otherwise: with free whitespace a weak model can spend every token it has
    # on newlines and tabs (the test suite's tiny model never closed its object).
    return llguidance.LLMatcher.grammar_from_json_schema(constraint.value, defaults={"whitespace_flexible": False})


class Grammars:
    """Compiles constraints for one model's tokenizer (`tokenizer.json`'s text), masks sized to its logits."""

    def __init__(self, tokenizer_json: str, vocab_size: int, eos: list[int]) -> None:
        import llguidance

        self.llguidance = llguidance
        self.vocab_size = vocab_size
        self.tokenizer = llguidance.LLTokenizer(tokenizer_json, n_vocab=vocab_size, eos_token=list(eos))
        self.words = (vocab_size + 31) // 32

    def compile(self, constraint: Constraint) -> GrammarState:
        """The grammar state of a new request; InvalidParams naming the constraint's field when llguidance
        refuses it (a bad regex, a schema it cannot compile)."""
        try:
            grammar = grammar_of(constraint)
        except ValueError as error:
            raise InvalidParams(constraint.kind, f"{constraint.kind}: {error}") from None
        matcher = self.llguidance.LLMatcher(self.tokenizer, grammar, log_level=0)
        if matcher.is_error():
            message = " ".join(matcher.get_error().split())[:400]
            raise InvalidParams(constraint.kind, f"{constraint.kind}: cannot be applied: {message}")
        return GrammarState(matcher, constraint.kind, self.words, self.vocab_size)


class GrammarState:
    """One request's place in its grammar. Used from the engine's thread only."""

    def __init__(self, matcher: Any, kind: str, words: int, vocab_size: int) -> None:
        self.matcher, self.kind = matcher, kind
        self.bitmask = np.zeros(words, dtype=np.int32)
        self.vocab_size = vocab_size

    def allowed(self) -> np.ndarray[Any, Any]:
        """Which tokens may come next (bool per token); ConstraintNotFollowed when none can."""
        self.matcher.unsafe_compute_mask_ptr(self.bitmask.ctypes.data, self.bitmask.nbytes)
        if self.matcher.is_error():
            raise self._error(self.matcher.get_error())
        bits = np.unpackbits(self.bitmask.view(np.uint8), bitorder="little")[:self.vocab_size]
        allowed = bits.astype(bool)
        if not allowed.any():
            raise self._error("no token is allowed")
        return allowed

    def advance(self, token: int) -> None:
        if not self.matcher.consume_token(token):
            raise self._error(self.matcher.get_error())

    def _error(self, message: str) -> ConstraintNotFollowed:
        message = " ".join(str(message).split("<state>")[0].split())[:300] or "no token is allowed"
        return ConstraintNotFollowed(f"{self.kind}: this model's tokens cannot continue the constraint ({message})")
