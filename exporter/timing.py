"""Where an export's speed figures come from. Measured by default; a caller may give them instead, so that what
timing decides (which variant is published, which rung of a ladder) is the same on every run: tests give the
figures, since a choice made on a shared machine's timings is a coin toss between variants that time alike."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# (sessions by variant name, one feed per batch size) -> {variant: {"1": ms, "32": ms}}
LatencyTimer = Callable[[dict[str, Any], dict[int, dict[str, np.ndarray[Any, Any]]]], dict[str, dict[str, float]]]
# (variant name, its runner, the prompt's token ids) -> (ms to the first token, tokens per second after it)
DecodeTimer = Callable[[str, Any, Sequence[int]], tuple[float, float]]


def _measured_latencies(sessions: dict[str, Any],
                        feeds: dict[int, dict[str, np.ndarray[Any, Any]]]) -> dict[str, dict[str, float]]:
    from tuneship.exporter.selection import time_feeds

    return time_feeds(sessions, feeds)


def _measured_decode(name: str, runner: Any, prompt: Sequence[int]) -> tuple[float, float]:
    from tuneship.exporter.instruct.measure import decode_speed

    return decode_speed(runner, prompt)


@dataclass(frozen=True)
class Timing:
    """The two speed measurements an export makes: latency per batch size (classifiers) and decode speed
    (generators)."""

    latencies: LatencyTimer = _measured_latencies
    decode: DecodeTimer = _measured_decode

    @classmethod
    def given(cls, latency_ms: Mapping[str, Mapping[str, float]] | None = None,
              decode: Mapping[str, tuple[float, float]] | None = None) -> Timing:
        """Figures given by variant name instead of measured; a variant missing from them is an error that names
        it (a figure made up for a variant nobody listed would decide a choice silently)."""

        def latencies(sessions: dict[str, Any], feeds: dict[int, dict[str, Any]]) -> dict[str, dict[str, float]]:
            table = latency_ms or {}
            missing = sorted(set(sessions) - set(table))
            if missing:
                raise KeyError(f"no latency given for {', '.join(missing)}")
            return {name: {str(b): float(table[name][str(b)]) for b in feeds} for name in sessions}

        def decoded(name: str, _runner: Any, _prompt: Sequence[int]) -> tuple[float, float]:
            table = decode or {}
            if name not in table:
                raise KeyError(f"no decode speed given for {name}")
            return table[name]

        return cls(latencies, decoded)


MEASURED = Timing()
