"""The serving engine in process, on the suite's tiny Llama: constrained rows share decode steps with plain rows and
answer as they do alone; a prompt whose start was computed before skips it and answers the same; a conversation's
next turn prefills only its question; the prefix cache stays within its bytes while a row decodes beside it."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from genai import greedy_alone

from tuneship.serving import ChatFormat, Constraint, Engine, Grammars, InvalidParams, Request, SamplingParams

pytestmark = pytest.mark.slow


class _Run:
    """Requests submitted to one engine, their tokens, reasons and cached prompt tokens."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def submit(self, prompt: list[int], params: SamplingParams, grammar: Any = None,
               on_token: Callable[[int], None] | None = None) -> tuple[list[int], threading.Event, dict[str, Any]]:
        got: list[int] = []
        done = threading.Event()
        outcome: dict[str, Any] = {}

        def token(t: int) -> bool:
            got.append(t)
            if on_token is not None:
                on_token(t)
            return True

        def finish(reason: str, error: BaseException | None) -> None:
            outcome.update(reason=reason, error=error, cached=request.cached)
            done.set()

        request = Request(prompt, params, token, finish, grammar=grammar)
        self.engine.submit(request)
        return got, done, outcome

    def one(self, prompt: list[int], params: SamplingParams, grammar: Any = None) -> tuple[list[int], dict[str, Any]]:
        got, done, outcome = self.submit(prompt, params, grammar)
        assert done.wait(60)
        assert outcome["error"] is None, outcome["error"]
        return got, outcome


@pytest.fixture(scope="module")
def folder(generator_repository: Path) -> Path:
    return generator_repository / "chat" / "1"


@pytest.fixture(scope="module")
def chat(folder: Path) -> ChatFormat:
    return ChatFormat(str(folder))


def _grammars(engine: Engine, chat: ChatFormat) -> Grammars:
    return Grammars(chat.tokenizer_json, engine.config.vocab_size or chat.tokenizer.get_vocab_size(True),
                    sorted(engine.eos))


def test_constrained_rows_share_steps_with_plain_rows_and_answer_as_alone(folder: Path, chat: ChatFormat) -> None:
    engine = Engine(str(folder), slots=6, threads=2, prefix_cache_bytes=0)
    run = _Run(engine)
    grammars = _grammars(engine, chat)
    prompt = chat.prompt_ids("Is this review positive or negative? A gripping film.")
    schema = {"type": "object", "properties": {"label": {"enum": ["positive", "negative"]}, "stars": {"type": "integer",
              "minimum": 1, "maximum": 5}}, "required": ["label", "stars"], "additionalProperties": False}
    constraints = [Constraint("guided_choice", ["positive", "negative"]), Constraint("guided_regex", "[a-z]{2,6}!"),
                   Constraint("guided_json", schema)]
    plain = SamplingParams(max_tokens=24, min_tokens=24)
    shaped = SamplingParams(max_tokens=40)
    try:
        alone_plain, _ = run.one(prompt, plain)
        alone = [run.one(prompt, shaped, grammars.compile(c))[0] for c in constraints]
        with engine.condition:  # all queued before the loop looks: they share steps
            jobs = [run.submit(prompt, plain), *(run.submit(prompt, shaped, grammars.compile(c)) for c in constraints),
                    run.submit(prompt, plain)]
        for _, done, outcome in jobs:
            assert done.wait(60) and outcome["error"] is None, outcome
    finally:
        engine.close()
    together = [got for got, _, _ in jobs]
    assert max(engine.batch_sizes) >= 5
    assert together[0] == together[-1] == alone_plain
    assert together[1:4] == alone
    texts = [str(chat.tokenizer.decode(tokens, skip_special_tokens=True)) for tokens in alone]
    assert texts[0] in ("positive", "negative")
    assert texts[1][-1] == "!" and texts[1][:-1].isalpha() and texts[1][:-1].islower()
    answer = json.loads(texts[2])
    assert answer["label"] in ("positive", "negative") and 1 <= answer["stars"] <= 5


def test_a_bad_grammar_is_refused_by_name_before_generating(folder: Path, chat: ChatFormat) -> None:
    engine = Engine(str(folder), slots=2, threads=2, prefix_cache_bytes=0)
    try:
        grammars = _grammars(engine, chat)
        with pytest.raises(InvalidParams, match="guided_regex") as refused:
            grammars.compile(Constraint("guided_regex", "(unclosed"))
        assert refused.value.field == "guided_regex"
        with pytest.raises(InvalidParams, match="guided_json"):
            grammars.compile(Constraint("guided_json", {"type": "no-such-type"}))
    finally:
        engine.close()


def test_a_repeated_prefix_is_reused_and_answers_as_without_the_cache(folder: Path, chat: ChatFormat) -> None:
    document = " ".join(f"Sentence {i} of a long document about films." for i in range(30))
    questions = ["Who made it?", "Is it any good?"]
    prompts = [chat.chat_ids([{"role": "system", "content": document}, {"role": "user", "content": q}])
               for q in questions]
    params = SamplingParams(max_tokens=12, min_tokens=12)
    cold = Engine(str(folder), slots=2, threads=2, prefix_cache_bytes=0)
    try:
        expected = [_Run(cold).one(p, params)[0] for p in prompts]
    finally:
        cold.close()
    engine = Engine(str(folder), slots=2, threads=2)
    run = _Run(engine)
    try:
        first, outcome = run.one(prompts[0], params)
        assert outcome["cached"] == 0 and first == expected[0]
        again, outcome = run.one(prompts[0], params)  # the same prompt: all of it but its last token
        assert outcome["cached"] == len(prompts[0]) - 1 and again == expected[0]
        other, outcome = run.one(prompts[1], params)  # the same document, another question
        shared = next(i for i, (a, b) in enumerate(zip(*prompts, strict=False)) if a != b)
        assert outcome["cached"] == shared > len(document) // 10 and other == expected[1]
    finally:
        engine.close()


def test_a_conversations_next_turn_prefills_only_its_question(folder: Path, chat: ChatFormat) -> None:
    """A session's turn that stops at the end marker runs the template's turn end through its row before it is
    cached: the follow-up's prompt is cached up to its new question and answers as a full prefill."""
    import onnxruntime_genai as og

    engine = Engine(str(folder), slots=3, threads=2)
    engine.set_turn_end(chat.turn_end(engine.eos))
    run = _Run(engine)
    conversation = [{"role": "user", "content": "Old films are"}]
    # What the template puts after an answer and around a new question (token by token: the tiny model's
    # answers do not survive decoding and encoding again).
    opened = chat.chat_ids([{"role": "user", "content": "a"}])
    answered = [*opened, *chat.encode("Fine"), *chat.turn_end(engine.eos)]
    full = chat.chat_ids([{"role": "user", "content": "a"}, {"role": "assistant", "content": "Fine"},
                          {"role": "user", "content": "Why?"}])
    assert full[:len(answered)] == answered
    question = full[len(answered):]
    try:
        assert engine.turn_end and engine.turn_end[0] in engine.eos
        first = chat.chat_ids(conversation)
        answer, outcome = run.one(first, SamplingParams(max_tokens=6, session_id="s1"))
        prompt = [*first, *answer, *engine.turn_end, *question]
        again, outcome = run.one(prompt, SamplingParams(max_tokens=5, min_tokens=5, session_id="s1"))
        # Everything but the new question came from the cache: the turn end too.
        assert outcome["cached"] == len(prompt) - len(question)
        assert again == greedy_alone(og.Model(str(folder)), prompt, 5)
        cold = Engine(str(folder), slots=1, threads=2, prefix_cache_bytes=0)
        try:
            assert _Run(cold).one(prompt, SamplingParams(max_tokens=5, min_tokens=5))[0] == again
        finally:
            cold.close()
    finally:
        engine.close()


def test_the_cache_stays_bounded_while_a_row_decodes_beside_it(folder: Path, chat: ChatFormat) -> None:
    """A stream of distinct prompts through a small cache: it never holds more than its bytes, and a row decoding
    meanwhile (its keys and values are its own, never a cache block's) answers as it does alone."""
    import onnxruntime_genai as og

    engine = Engine(str(folder), slots=3, threads=2, prefix_cache_bytes=0)
    per_token = engine.kv.bytes_per_token
    engine.close()
    bound = 200 * per_token
    engine = Engine(str(folder), slots=3, threads=2, prefix_cache_bytes=bound)
    run = _Run(engine)
    long_prompt = chat.prompt_ids("Tell me about the films of the year.")
    sizes: list[int] = []
    try:
        got, done, outcome = run.submit(long_prompt, SamplingParams(max_tokens=120, min_tokens=120),
                                        on_token=lambda _t: sizes.append(engine.prefix.nbytes))
        for i in range(30):
            run.one(chat.prompt_ids(f"Review number {i}: " + "word " * (5 + i % 20)), SamplingParams(max_tokens=2))
            sizes.append(engine.prefix.nbytes)
        assert done.wait(60) and outcome["error"] is None
    finally:
        engine.close()
    assert max(sizes) <= bound and engine.prefix.evicted > 0
    assert got == greedy_alone(og.Model(str(folder)), long_prompt, 120)
