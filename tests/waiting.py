"""Waiting for a condition instead of sleeping: a sleep is either too short on a loaded machine (the test fails by
chance) or too long everywhere else (the suite crawls). Poll the condition itself, with a deadline generous enough
for the slowest machine, and say what never happened."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], what: str, timeout_s: float = 30.0, interval_s: float = 0.05) -> T:
    """`condition()`'s first truthy value; AssertionError naming `what` when `timeout_s` passes without one."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g} s (last: {value!r})")
        time.sleep(interval_s)


def process_gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie waiting for its parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True
