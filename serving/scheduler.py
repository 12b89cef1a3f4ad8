"""Who runs next: requests wait in arrival order and take a row as one frees, at the next step. A request's prompt
is prefilled between two decode steps, alone in its row; the decode step then takes every running row, so a new
request starts at once and a finished one leaves at once (continuous batching)."""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Scheduler(Generic[T]):
    """Arrival-order admission into `slots` rows. Used under the engine's condition."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.waiting: deque[T] = deque()

    def add(self, request: T) -> None:
        self.waiting.append(request)

    def admit(self, running: int) -> list[T]:
        """The waiting requests that take the rows free now, oldest first."""
        admitted: list[T] = []
        while self.waiting and running + len(admitted) < self.slots:
            admitted.append(self.waiting.popleft())
        return admitted

    def __len__(self) -> int:
        return len(self.waiting)
