"""The automatic prefix cache's tree of blocks (serving/prefix_cache.py), with keys and values that spell their own
tokens: what a lookup returns is the cached start of the prompt and nothing else, within the byte bound, per
namespace, least recently used evicted first."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from tuneship.serving import PrefixCache

LAYERS2, HEADS, WIDTH = 2, 1, 1
PER_TOKEN = LAYERS2 * HEADS * WIDTH * 4


def _reader(tokens: Sequence[int], calls: list[tuple[int, int]] | None = None) -> Callable[[int, int], np.ndarray]:
    """A row's keys and values that hold each position's token (so a reused block shows what it was cached for)."""
    def read(start: int, end: int) -> np.ndarray:
        if calls is not None:
            calls.append((start, end))
        values = np.asarray(tokens[start:end], dtype=np.float32)
        return np.broadcast_to(values[None, None, :, None], (LAYERS2, HEADS, end - start, WIDTH)).copy()

    return read


def _reused(cache: PrefixCache, namespace: str, prompt: Sequence[int]) -> list[int]:
    """The tokens whose keys and values a lookup would copy into a row, read back from those keys and values."""
    found: list[int] = []
    for block, count in cache.match(namespace, prompt, len(prompt) - 1):
        assert block.kv is not None
        found += [int(v) for v in block.kv[0, 0, :count, 0]]
    return found


def test_a_prompt_sent_again_reuses_all_but_its_last_token() -> None:
    cache = PrefixCache(1 << 20, PER_TOKEN, block_tokens=4)
    prompt = list(range(100, 111))  # two whole blocks and a tail of 3
    assert _reused(cache, "", prompt) == []
    cache.insert("", prompt, _reader(prompt))
    assert _reused(cache, "", prompt) == prompt[:-1]  # the last token's logits are what the prefill is for
    longer = [*prompt, 7, 8, 9]
    assert _reused(cache, "", longer) == prompt


def test_prompts_share_their_common_start_even_inside_a_block() -> None:
    cache = PrefixCache(1 << 20, PER_TOKEN, block_tokens=4)
    first = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    cache.insert("", first, _reader(first))
    other = [1, 2, 3, 4, 5, 6, 70, 80, 90, 100]
    assert _reused(cache, "", other) == [1, 2, 3, 4, 5, 6]
    assert _reused(cache, "", [9, 9, 9, 9, 9]) == []


def test_only_what_is_not_cached_is_read_and_stored_once() -> None:
    cache = PrefixCache(1 << 20, PER_TOKEN, block_tokens=4)
    document = list(range(1, 13))
    cache.insert("", [*document, 50, 51], _reader([*document, 50, 51]))
    stored = cache.nbytes
    calls: list[tuple[int, int]] = []
    question = [*document, 60, 61, 62]
    cache.insert("", question, _reader(question, calls))
    assert calls == [(12, 15)]  # the shared document was not read again
    assert cache.nbytes == stored + 3 * PER_TOKEN
    assert _reused(cache, "", [*question, 1]) == question


def test_namespaces_never_share_keys_and_values() -> None:
    """An adapter's cache is never used for another adapter or the base model: its keys and values differ."""
    cache = PrefixCache(1 << 20, PER_TOKEN, block_tokens=4)
    prompt = list(range(20))
    cache.insert("adapter:abc", prompt, _reader(prompt))
    assert _reused(cache, "", prompt) == [] and _reused(cache, "adapter:xyz", prompt) == []
    assert _reused(cache, "adapter:abc", prompt) == prompt[:-1]
    cache.clear("adapter:abc")
    assert cache.nbytes == 0 and _reused(cache, "adapter:abc", prompt) == []


def test_the_cache_stays_within_its_bytes_under_distinct_prompts_least_recent_first() -> None:
    bound = 40 * PER_TOKEN
    cache = PrefixCache(bound, PER_TOKEN, block_tokens=4)
    rng = np.random.default_rng(0)
    kept = [1000 + i for i in range(10)]
    cache.insert("", kept, _reader(kept))
    for n in range(200):
        prompt = [int(t) for t in rng.integers(0, 50, size=int(rng.integers(2, 30)))]
        cache.insert("", prompt, _reader(prompt))
        assert cache.nbytes <= bound, (n, cache.nbytes)
        assert cache.nbytes == sum(b.nbytes for b in cache.lru.values())
        # Used before every other insertion: never the least recently used, so never evicted.
        assert _reused(cache, "", [*kept, 1]) == kept
    assert cache.evicted > 0
    huge = list(range(5000, 5100))
    assert cache.insert("", huge, _reader(huge)) == 0  # larger than the whole cache: not kept
    assert _reused(cache, "", [*kept, 1]) == kept


def test_pinned_blocks_are_never_evicted() -> None:
    cache = PrefixCache(12 * PER_TOKEN, PER_TOKEN, block_tokens=4)
    opening = [1, 2, 3, 4, 5, 6, 7, 8]
    cache.insert("", opening, _reader(opening), pinned=True)
    for start in range(100, 200, 10):
        prompt = list(range(start, start + 8))
        cache.insert("", prompt, _reader(prompt))
    assert _reused(cache, "", [*opening, 9]) == opening
