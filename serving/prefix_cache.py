"""Automatic prefix caching: any request whose prompt starts with tokens the engine computed recently takes their
keys and values instead of prefilling them (a shared system prompt, few-shot examples, a document asked several
questions, the same question again, a conversation's earlier turns). Callers get it without asking.

The cache is a tree of blocks of `block_tokens` tokens, as SGLang's radix cache and vLLM's hashed blocks are: a
block's place in the tree is everything before it, so two prompts share exactly the blocks of their common prefix,
stored once. The last block of an insertion may be shorter (a tail), so a prompt sent again reuses all of itself
but its last token (whose logits the prefill is for); a lookup may also use the common start of a block it only
partly matches, since a position's keys and values depend only on the tokens up to it.

Bounded in bytes; the least recently used leaf is evicted first (a block whose children are still cached is kept:
they need it). Running rows hold their own copies in the engine's slots, so eviction never takes memory a running
row reads. One tree per namespace: a model version's base weights and each adapter publication have their own
(keys and values computed with one adapter are wrong for another). Used from the engine's thread only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

BLOCK_TOKENS = 16


class Block:
    """Keys and values of `tokens` ([layers * 2, kv_heads, len(tokens), head_size]: each layer's keys, then its
    values), after the blocks on the path to it."""

    __slots__ = ("children", "kv", "nbytes", "parent", "pinned", "tokens")

    def __init__(self, tokens: tuple[int, ...], kv: np.ndarray[Any, Any] | None, parent: Block | None) -> None:
        self.tokens = tokens
        self.kv = kv
        self.parent = parent
        self.children: dict[tuple[int, ...], Block] = {}
        self.nbytes = int(kv.nbytes) if kv is not None else 0
        self.pinned = False


def _common(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PrefixCache:
    """`max_bytes` of cached keys and values across namespaces (`bytes_per_token` each); `max_bytes` 0 turns
    caching off."""

    def __init__(self, max_bytes: int, bytes_per_token: int, block_tokens: int = BLOCK_TOKENS) -> None:
        self.max_bytes = max_bytes
        self.bytes_per_token = bytes_per_token
        self.block_tokens = block_tokens
        self.roots: dict[str, Block] = {}
        self.lru: OrderedDict[int, Block] = OrderedDict()  # every block, least recently used first
        self.nbytes = 0
        self.evicted = 0  # blocks
        self.hits = 0  # tokens served from the cache
        self.lookups = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def __len__(self) -> int:
        return len(self.lru)

    def match(self, namespace: str, tokens: Sequence[int], limit: int) -> list[tuple[Block, int]]:
        """The cached blocks of the longest cached prefix of `tokens`, at most `limit` tokens, as (block, how many
        of its tokens to use); they become the most recently used."""
        self.lookups += 1
        root = self.roots.get(namespace)
        if root is None or limit <= 0:
            return []
        path: list[tuple[Block, int]] = []
        node, at = root, 0
        size = self.block_tokens
        while at < limit:
            chunk = tuple(tokens[at:at + size])
            child = node.children.get(chunk) if len(chunk) == size else None
            if child is not None and at + size <= limit:
                path.append((child, size))
                node, at = child, at + size
                continue
            # No whole block: the child sharing the longest start with what is left (a tail, or a block that
            # continues differently), for as many tokens as it shares.
            best, shared = None, 0
            for candidate in node.children.values():
                n = _common(candidate.tokens, chunk)
                if n > shared:
                    best, shared = candidate, n
            shared = min(shared, limit - at)
            if best is not None and shared > 0:
                path.append((best, shared))
            break
        for block, _ in reversed(path):  # leaves before their parents: a parent is never older than its child
            self.lru.move_to_end(id(block))
        self.hits += sum(n for _, n in path)
        return path

    def insert(self, namespace: str, tokens: Sequence[int], read: Callable[[int, int], np.ndarray[Any, Any]],
               pinned: bool = False) -> int:
        """Cache `tokens` whose keys and values `read(start, end)` gives ([layers * 2, kv_heads, end - start,
        head_size], from a slot); only what is not cached yet is read. Returns the tokens newly cached."""
        if not self.enabled or not tokens:
            return 0
        root = self.roots.setdefault(namespace, Block((), None, None))
        size = self.block_tokens
        node, at = root, 0
        spans: list[tuple[Block, int, int]] = []  # (parent, start, end) of blocks to create
        while at < len(tokens):
            chunk = tuple(tokens[at:at + size])
            child = node.children.get(chunk)
            if child is not None and len(chunk) == size:
                node, at = child, at + size
                continue
            if len(chunk) < size and any(len(c.tokens) >= len(chunk) and c.tokens[:len(chunk)] == chunk
                                         for c in node.children.values()):
                break  # a tail already covered by a longer block
            spans.append((node, at, at + len(chunk)))
            break
        if not spans:
            self._touch_path(node)
            return 0
        parent, start, _ = spans[0]
        end = len(tokens)
        needed = self.bytes_per_token * (end - start)
        if needed > self.max_bytes:
            return 0  # larger than the whole cache
        self._touch_path(parent)
        self._evict(self.max_bytes - needed, keep=self._path(parent))
        staged = read(start, end)
        added = 0
        at = start
        node = parent
        while at < end:
            chunk = tuple(tokens[at:at + size])
            # A shorter tail this block's tokens start with is covered by it now.
            for old in [c for c in node.children.values() if len(c.tokens) < len(chunk)
                        and chunk[:len(c.tokens)] == c.tokens and not c.children]:
                self._remove(old)
            block = Block(chunk, np.ascontiguousarray(staged[:, :, at - start:at - start + len(chunk)]), node)
            block.pinned = pinned
            node.children[chunk] = block
            self.lru[id(block)] = block
            self.nbytes += block.nbytes
            added += len(chunk)
            node, at = block, at + len(chunk)
            if len(chunk) < size:
                break
        self._evict(self.max_bytes)
        return added

    @staticmethod
    def _path(node: Block) -> set[int]:
        found = set()
        while node is not None:
            found.add(id(node))
            node = node.parent  # type: ignore[assignment]
        return found

    def _touch_path(self, node: Block) -> None:
        while node is not None and node.parent is not None:
            self.lru.move_to_end(id(node))
            node = node.parent

    def _evict(self, budget: int, keep: set[int] | None = None) -> None:
        """Least recently used leaves first, until the cache holds at most `budget` bytes (`keep`: blocks an
        insertion is about to extend)."""
        if self.nbytes <= budget:
            return
        keep = keep or set()
        for block in list(self.lru.values()):
            if self.nbytes <= budget:
                break
            if block.children or block.pinned or id(block) in keep:
                continue
            self._remove(block)
            self.evicted += 1
            parent = block.parent
            # A parent left childless is now a leaf, older than what follows it: take it while over budget.
            while parent is not None and parent.parent is not None and not parent.children and not parent.pinned \
                    and id(parent) not in keep and self.nbytes > budget:
                grand = parent.parent
                self._remove(parent)
                self.evicted += 1
                parent = grand

    def _remove(self, block: Block) -> None:
        parent = block.parent
        if parent is not None and parent.children.get(block.tokens) is block:
            del parent.children[block.tokens]
        if self.lru.pop(id(block), None) is not None:
            self.nbytes -= block.nbytes
        block.kv = None

    def clear(self, namespace: str | None = None) -> None:
        """Forget a namespace (an adapter unloaded), or everything."""
        names = [namespace] if namespace is not None else list(self.roots)
        for name in names:
            root = self.roots.pop(name, None)
            stack = list(root.children.values()) if root is not None else []
            while stack:
                block = stack.pop()
                stack.extend(block.children.values())
                if self.lru.pop(id(block), None) is not None:
                    self.nbytes -= block.nbytes

    def namespaces(self) -> list[str]:
        return list(self.roots)
