"""The running rows' keys and values: one buffer per layer for keys and one for values, [slots, kv_heads,
capacity, head_size], a row per running request. The decoder graph reads each row's length from its attention
mask and writes the new token's keys and values in place (its past and present are the same memory), so nothing
is copied per step. Running rows stay at the front: a freed row takes the last one's cache, so a step's rows are
one contiguous block of every buffer."""

from __future__ import annotations

from typing import Any

import numpy as np


class KVCache:
    def __init__(self, slots: int, layers: int, kv_heads: int, head_size: int, capacity: int,
                 max_capacity: int) -> None:
        self.slots, self.layers, self.kv_heads, self.head_size = slots, layers, kv_heads, head_size
        self.max_capacity = max_capacity
        self.capacity = 0
        self.keys: list[np.ndarray[Any, Any]] = []
        self.values: list[np.ndarray[Any, Any]] = []
        self.generation = 0  # changes whenever the buffers are replaced (bindings into them are stale then)
        self.grow(min(capacity, max_capacity))

    @property
    def bytes_per_token(self) -> int:
        return 2 * self.layers * self.kv_heads * self.head_size * 4

    def buffers(self) -> list[np.ndarray[Any, Any]]:
        """Each layer's keys, then its values, in layer order (the layout of a prefix-cache block)."""
        return [buffer for layer in range(self.layers) for buffer in (self.keys[layer], self.values[layer])]

    def grow(self, capacity: int) -> None:
        """Buffers of `capacity` positions per slot, the rows' caches carried over."""
        shape = (self.slots, self.kv_heads, capacity, self.head_size)
        keys = [np.zeros(shape, dtype=np.float32) for _ in range(self.layers)]
        values = [np.zeros(shape, dtype=np.float32) for _ in range(self.layers)]
        if self.capacity:
            keep = min(self.capacity, capacity)
            for old, new in zip((*self.keys, *self.values), (*keys, *values), strict=True):
                new[:, :, :keep] = old[:, :, :keep]
        self.keys, self.values, self.capacity = keys, values, capacity
        self.generation += 1

    def ensure(self, needed: int) -> None:
        """Room for `needed` positions per row (doubling, up to the model's limit)."""
        if needed > self.capacity:
            self.grow(min(self.max_capacity, max(needed, 2 * self.capacity)))

    def read(self, slot: int, start: int, end: int) -> np.ndarray[Any, Any]:
        """Positions start..end-1 of a row: [layers * 2, kv_heads, end - start, head_size], a copy."""
        return np.stack([buffer[slot, :, start:end] for buffer in self.buffers()])

    def write(self, slot: int, start: int, kv: np.ndarray[Any, Any], count: int) -> None:
        """The first `count` positions of `kv` (read()'s layout) into a row from `start`."""
        for buffer, part in zip(self.buffers(), kv, strict=True):
            buffer[slot, :, start:start + count] = part[:, :count]

    def move(self, source: int, target: int, length: int) -> None:
        """Row `source`'s first `length` positions into row `target`."""
        for buffer in (*self.keys, *self.values):
            buffer[target, :, :length] = buffer[source, :, :length]
