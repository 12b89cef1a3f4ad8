"""What a long command is doing, as it does it: one line when a step starts, one with its time when it ends.

An export or a publish takes up to a minute on a CPU; a silent minute looks like a hang.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def step(what: str) -> Iterator[None]:
    print(f"-> {what} ...", flush=True)
    started = time.monotonic()
    yield
    print(f"   {what}: done in {time.monotonic() - started:.1f}s", flush=True)
