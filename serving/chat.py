"""Prompts as token ids: a conversation rendered with the model's chat template, where only the template's own
markers become control tokens. A caller's text is tokenized as text: a user message holding `<|im_end|>` gets the
characters of that string, not the end-of-turn token, so no caller can close its own turn and write a system turn
after it. (The template is rendered around placeholders; the template's parts are tokenized with their control
tokens, each message's content with special tokens split, as Hugging Face tokenizers' `split_special_tokens`.)

A raw prompt (`raw: true`) is the caller's own text, tokenized as it is, markers included: the caller's
responsibility, as with any completion endpoint that takes templated text.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from typing import Any

ROLES = ("system", "user", "assistant", "tool")
_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")


def _shared_length(first: Sequence[int], second: Sequence[int]) -> int:
    shared = 0
    while shared < min(len(first), len(second)) and first[shared] == second[shared]:
        shared += 1
    return shared


class ChatFormat:
    """One model folder's tokenizer (`tokenizer.json`) and chat template (`chat_template.jinja`, if any)."""

    def __init__(self, directory: str) -> None:
        from tokenizers import Tokenizer

        path = os.path.join(directory, "tokenizer.json")
        self.tokenizer = Tokenizer.from_file(path)
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.text_tokenizer = Tokenizer.from_file(path)  # the same, reading special tokens' text as text
        self.text_tokenizer.no_padding()
        self.text_tokenizer.no_truncation()
        self.text_tokenizer.encode_special_tokens = True
        with open(path, encoding="utf-8") as handle:
            self.tokenizer_json = handle.read()
        added = [t for t in json.loads(self.tokenizer_json).get("added_tokens", []) if t.get("special")]
        self.markers = [t["content"] for t in added if len(t.get("content", "")) > 2]
        self.marker_ids = {int(t["id"]) for t in added}
        self.special: dict[str, Any] = {}
        try:
            with open(os.path.join(directory, "tokenizer_config.json"), encoding="utf-8") as handle:
                config = json.load(handle)
            self.special = {k: v for k, v in config.items() if k.endswith("_token") and isinstance(v, str)}
        except (OSError, ValueError):
            pass
        template_path = os.path.join(directory, "chat_template.jinja")
        self.template: Any = None
        if os.path.isfile(template_path):
            with open(template_path, encoding="utf-8") as handle:
                self.template = _compile(handle.read())

    # -- prompts --------------------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """`text` as it is (a raw prompt: its markers become control tokens)."""
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def prompt_ids(self, text: str, raw: bool = False) -> list[int]:
        """A text prompt. A chat model given plain text would end its answer at once (it was tuned on its
        template), so without `raw` the text becomes one user turn, as Ollama's generate does."""
        if self.template is None or raw:
            return self.encode(text)
        return self.chat_ids([{"role": "user", "content": text}])

    def chat_ids(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True) -> list[int]:
        """`messages` in the chat template, ending with the assistant's turn opened; each content tokenized as
        text (its special tokens split)."""
        if self.template is None:
            raise ValueError("messages: this model has no chat template; send text_input with raw true")
        originals: list[str] = []
        placed = []
        for message in messages:
            copy = dict(message)
            if isinstance(copy.get("content"), str):
                copy["content"] = f"\ue000{len(originals)}\ue001"
                originals.append(str(message["content"]))
            placed.append(copy)
        rendered = self.template.render(messages=placed, add_generation_prompt=add_generation_prompt,
                                        **self.special)
        pieces: list[tuple[str, bool]] = []  # (text, is a message's content)
        at = 0
        for match in _PLACEHOLDER.finditer(rendered):
            pieces.append((rendered[at:match.start()], False))
            pieces.append((originals[int(match.group(1))], True))
            at = match.end()
        pieces.append((rendered[at:], False))
        # The whole text at once (as Hugging Face's apply_chat_template tokenizes it) unless a control token came
        # out of a message's content; then piece by piece, the contents with special tokens split.
        text, spans = "", []
        for piece, content in pieces:
            if content:
                spans.append((len(text), len(text) + len(piece)))
            text += piece
        encoded = self.tokenizer.encode(text, add_special_tokens=False)
        forged = any(token in self.marker_ids and any(start < end_ and start_ < end for start_, end_ in spans)
                     for token, (start, end) in zip(encoded.ids, encoded.offsets, strict=True))
        if not forged:
            return list(encoded.ids)
        ids: list[int] = []
        for piece, content in pieces:
            if piece:
                ids += (self.text_tokenizer if content else self.tokenizer).encode(piece, add_special_tokens=False).ids
        return ids

    # -- what every conversation shares -------------------------------------------------------------------

    def opening(self) -> list[int]:
        """The tokens every chat request starts with (the template's system prompt and first role marker): the
        common prefix of two different conversations."""
        if self.template is None:
            return []
        first, second = (self.chat_ids([{"role": "user", "content": text}]) for text in ("a", "Zebra 42?"))
        return first[:_shared_length(first, second)]

    def turn_end(self, eos: set[int]) -> list[int]:
        """The tokens the template puts after an answer, from its end marker up to the next user's words: the
        common part of two follow-ups of one answer, after the first turn's prompt and the answer. Empty when the
        template renders the first turn differently once it is followed."""
        if self.template is None:
            return []
        first = [{"role": "user", "content": "a"}]
        prompt = self.chat_ids(first)
        answered = [*first, {"role": "assistant", "content": "Fine"}]
        one, two = (self.chat_ids([*answered, {"role": "user", "content": question}])
                    for question in ("Zebra 42?", "Quick brown?"))
        if one[:len(prompt)] != prompt:
            return []
        tail = one[len(prompt):_shared_length(one, two)]
        ends = [i for i, token in enumerate(tail) if token in eos]
        return tail[ends[0]:] if ends else []

    def decoder(self) -> Any:
        """A streaming decoder: `step(token)` gives the text that token completes (None while a character is
        still partial)."""
        from tokenizers.decoders import DecodeStream

        return DecodeStream(skip_special_tokens=True)

    def decode_step(self, stream: Any, token: int) -> str:
        return stream.step(self.tokenizer, token) or ""


def _compile(source: str) -> Any:
    """The template in Jinja's sandbox, as transformers renders chat templates (templates are untrusted code)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ValueError(f"the chat template refused the conversation: {message}")

    def tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    environment.filters["tojson"] = tojson
    environment.globals["raise_exception"] = raise_exception
    return environment.from_string(source)
