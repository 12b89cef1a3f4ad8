"""Callbacks a caller adds to every task's Trainer for one run, without a training option for them: `tuneship
search` reports each evaluation to its trial and stops a hopeless one (Optuna's integrations do the same through
the Trainer's callback list)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_EXTRA: ContextVar[tuple[Any, ...]] = ContextVar("tuneship_training_callbacks", default=())


@contextmanager
def training_callbacks(*callbacks: Any) -> Iterator[None]:
    """Every Trainer built inside the block also gets `callbacks` (transformers.TrainerCallback instances)."""
    token = _EXTRA.set(_EXTRA.get() + callbacks)
    try:
        yield
    finally:
        _EXTRA.reset(token)


def extra_callbacks() -> tuple[Any, ...]:
    return _EXTRA.get()
