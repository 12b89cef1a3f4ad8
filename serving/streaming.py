"""One answer's text as its tokens come: decoded piece by piece, cut at the first stop string, and sent as pieces
at most every `interval_s` (the first at once: it is the caller's time to first token). A piece is a round trip to
the server between two decode steps, so sending every token costs a stream on two cores about a tenth of its
speed; what could be the start of a stop string is held back until it is known not to be one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class AnswerText:
    def __init__(self, decode: Any, stops: Sequence[str], stream: bool, interval_s: float) -> None:
        self.decode = decode  # token -> the text it completes
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) - 1 for s in self.stops), default=0)
        self.stream, self.interval_s = stream, interval_s
        self.text, self.sent, self.count = "", 0, 0
        self.last_sent = 0.0

    def add(self, token: int, now: float) -> tuple[str | None, bool]:
        """(a piece to send now or None, whether the answer goes on): False once a stop string ended it."""
        self.count += 1
        self.text += self.decode(token)
        hit = min((self.text.find(s) for s in self.stops if s in self.text), default=-1)
        if hit >= 0:
            self.text = self.text[:hit]
            return None, False
        if not self.stream:
            return None, True
        ready = len(self.text) - self.hold
        if ready > self.sent and (self.sent == 0 or now - self.last_sent >= self.interval_s):
            piece = self.text[self.sent:ready]
            self.sent, self.last_sent = ready, now
            return piece, True
        return None, True

    def rest(self) -> str:
        """What the final response carries: the unsent end of a stream, or the whole answer."""
        return self.text[self.sent:] if self.stream else self.text
