"""Conversations keep their cache: the session store's bounds, the batcher's reuse of a kept prefix (its answers
the same as a full prefill's), and a served session's second turn reporting the prompt tokens it did not prefill."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from genai import greedy_alone

from tuneship.exporter.triton_models.batcher import Cached, SessionCache


def _entry(ids: list[int], width: int = 4) -> Cached:
    kv = [np.zeros((1, len(ids), width), dtype=np.float32)]
    return Cached(ids, kv, [a.copy() for a in kv])


def test_a_cached_prefix_is_the_shared_start_and_never_the_whole_prompt() -> None:
    entry = _entry([1, 2, 3, 4])
    assert entry.shared(np.array([1, 2, 3, 4, 5, 6])) == 4
    assert entry.shared(np.array([1, 2, 9, 4, 5])) == 2
    # The prompt's last token is always prefilled: its logits are the first answer token's.
    assert entry.shared(np.array([1, 2, 3])) == 2
    assert entry.shared(np.array([7, 2, 3])) == 0


def test_sessions_are_bounded_in_number_bytes_and_lifetime_least_recent_first() -> None:
    per = _entry([1, 2, 3]).nbytes
    cache = SessionCache(max_sessions=2, max_bytes=10 * per, ttl_s=60)
    cache.put("a", _entry([1, 2, 3]))
    cache.put("b", _entry([1, 2, 3]))
    cache.put("c", _entry([1, 2, 3]))  # a, the least recently used, goes
    assert list(cache.entries) == ["b", "c"] and cache.evicted == 1 and cache.nbytes == 2 * per
    taken = cache.take("b")  # a running turn owns its session's cache
    assert taken is not None and cache.take("b") is None and list(cache.entries) == ["c"]

    small = SessionCache(max_sessions=10, max_bytes=2 * per, ttl_s=60)
    for name in "xyz":
        small.put(name, _entry([1, 2, 3]))
    assert list(small.entries) == ["y", "z"] and small.nbytes == 2 * per
    small.put("huge", _entry(list(range(100))))  # larger than the whole budget: not kept, nothing evicted for it
    assert list(small.entries) == ["y", "z"]

    brief = SessionCache(max_sessions=10, max_bytes=10 * per, ttl_s=0.05)
    brief.put("old", _entry([1, 2, 3]))
    time.sleep(0.1)
    assert brief.take("old") is None and brief.nbytes == 0 and brief.evicted == 1


@pytest.mark.slow
def test_a_follow_up_turn_prefills_only_what_is_new_and_answers_the_same(generator_repository: Path) -> None:
    import onnxruntime_genai as og

    folder = generator_repository / "chat" / "1"
    sys.path.insert(0, str(folder))
    from tuneship_batcher import ContinuousBatcher, Sequence
    from tuneship_batcher import SessionCache as ServedCache

    tokenizer = og.Tokenizer(og.Model(str(folder)))
    first = [int(t) for t in tokenizer.encode("Old films are")]
    opening = first[:2]
    batcher = ContinuousBatcher(str(folder), slots=2, threads=2, capacity=32,
                                sessions=ServedCache(max_sessions=4, max_bytes=1 << 30, ttl_s=60))
    batcher.share_prefix(opening)

    def turn(prompt: list[int], count: int, session: str | None) -> tuple[list[int], int]:
        got: list[int] = []
        done = threading.Event()
        sequence = Sequence(prompt, count, lambda t: got.append(t) is None, lambda r, e: done.set(),
                            min_new_tokens=count, session=session)
        batcher.submit(sequence)
        assert done.wait(60)
        return got, sequence.cached

    try:
        answer, cached = turn(first, 6, "s1")
        assert cached == len(opening)  # the template's opening, shared by every request
        follow = first + answer + [int(t) for t in tokenizer.encode(" and new ones")]
        again, cached = turn(follow, 5, "s1")
        # The kept cache holds the prompt and every answer token but the last (never fed back).
        assert cached == len(first) + len(answer) - 1
        assert again == greedy_alone(og.Model(str(folder)), follow, 5)
        _, cold = turn(follow, 2, "other")
        assert cold == len(opening)  # another session does not read s1's cache
        assert len(batcher.sessions) == 2
    finally:
        batcher.close()


@pytest.mark.slow
def test_a_turn_that_ends_keeps_the_templates_turn_end_for_the_follow_up(generator_repository: Path) -> None:
    """An answer that stops at its end marker runs the template's turn end (marker, next user header) through its
    row before the session keeps it: the follow-up prefills only its own words and answers as a full prefill, and
    a row decoding beside it is not disturbed."""
    import onnxruntime_genai as og

    folder = generator_repository / "chat" / "1"
    sys.path.insert(0, str(folder))
    from tuneship_batcher import ContinuousBatcher, Sequence
    from tuneship_batcher import SessionCache as ServedCache

    tokenizer = og.Tokenizer(og.Model(str(folder)))
    first = [int(t) for t in tokenizer.encode("Old films are")]
    batcher = ContinuousBatcher(str(folder), slots=3, threads=2, capacity=64,
                                sessions=ServedCache(max_sessions=4, max_bytes=1 << 30, ttl_s=60))

    def start(prompt: list[int], count: int, session: str | None, minimum: int = 0) -> Any:
        got: list[int] = []
        done = threading.Event()
        ended: list[str] = []
        sequence = Sequence(prompt, count, lambda t: got.append(t) is None,
                            lambda r, e: (ended.append(r), done.set()), min_new_tokens=minimum, session=session,
                            repetition_penalty=5.0)  # the tiny model repeats one token otherwise
        batcher.submit(sequence)
        return got, done, ended, sequence

    def turn(prompt: list[int], count: int, session: str | None, minimum: int = 0) -> tuple[list[int], int, str]:
        got, done, ended, sequence = start(prompt, count, session, minimum)
        assert done.wait(60)
        return got, sequence.cached, ended[0]

    try:
        batcher.eos = set()  # plain argmax first, to pick a token the answer will reach as its end marker
        ref, _, _ = turn(first, 6, None)
        at = next(i for i in range(1, 6) if ref[i] not in ref[:i])
        batcher.eos = {ref[at]}
        turn_end = [ref[at], 7, 8]
        batcher.set_turn_end(turn_end)
        beside_alone, _, _ = turn([*first, 9], 12, None, minimum=12)

        got, done, _, _ = start([*first, 9], 12, None, minimum=12)  # decoding while the session's turn ends
        answer, _, reason = turn(first, 8, "s1")
        assert done.wait(60) and got == beside_alone
        assert reason == "stop" and answer == ref[:at]
        follow = first + answer + turn_end + [int(t) for t in tokenizer.encode(" and new ones")]
        again, cached, _ = turn(follow, 5, "s1", minimum=5)
        assert cached == len(first) + len(answer) + len(turn_end)  # the turn end came from the cache too
        cold, _, _ = turn(follow, 5, None, minimum=5)
        assert again == cold
        # A turn cut at its length: its last token (never fed back) and the turn end are run through it too.
        cut, _, reason = turn(first, 2, "s2", minimum=2)
        assert reason == "length"
        follow = first + cut + turn_end + [5]
        again, cached, _ = turn(follow, 3, "s2", minimum=3)
        assert cached == len(follow) - 1
        assert again == turn(follow, 3, None, minimum=3)[0]
    finally:
        batcher.close()
