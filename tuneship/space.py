"""Search spaces, declared once per task beside its training options (trainer/<task>/search_space.py) and read by
`tuneship search`: for each method the options a trial may vary and their ranges, define-by-run (a trial picks a
method, then that method's options), overridable in a YAML or TOML space file.

Light on purpose (the core imports no stage): ranges are plain dataclasses; Optuna only sees them in tuneship.search.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Floats:
    """A real range; `log` samples it on a log scale (learning rates)."""

    low: float
    high: float
    log: bool = False

    def describe(self) -> str:
        return f"{self.low:g}..{self.high:g}" + (" (log)" if self.log else "")


@dataclass(frozen=True)
class Ints:
    low: int
    high: int
    log: bool = False

    def describe(self) -> str:
        return f"{self.low}..{self.high}" + (" (log)" if self.log else "")


@dataclass(frozen=True)
class Choice:
    """One of a few values (a single value fixes the option)."""

    options: tuple[Any, ...]

    def describe(self) -> str:
        return "|".join(str(option) for option in self.options)


Dimension = Floats | Ints | Choice


@dataclass(frozen=True)
class TaskSpace:
    """What a search over one task varies by default."""

    task: str
    methods: Mapping[str, Mapping[str, Dimension]]
    """Each method the search may pick, with the options it varies (the others keep their training defaults)."""
    precisions: tuple[str, ...]
    """The exporter's precisions a trial may be published at (each only if it passes the export gate)."""
    default: Mapping[str, Any]
    """The configuration a user gets without a search (`tuneship train` and `tuneship export` defaults), run as
    the first trial so the front is compared with it."""
    quality: str
    """metrics.json's quality figure (higher is better): accuracy, macro_f1, exact_match."""
    models: tuple[str, ...] = ()
    """Base models tried when --model is not given (empty: the task's default model)."""
    layered: bool = False
    """Encoders: shallower copies of the base model (--layers) are a search dimension too."""
    layouts: tuple[str, ...] = ()
    """How a trial may be served (the exporter's `--layout`: the ensemble, or one model that tokenizes and runs the
    graph itself, which saves the Python backend's hops at batch 1); empty: the exporter's default only."""
    fixed: Mapping[str, Any] = field(default_factory=dict)
    """Training options every trial takes (their defaults suit a single run, not a search)."""


def dimension(value: Any, where: str) -> Dimension:
    """A space file's range: {low, high, log} (ints if both ends are ints), a list of choices, or one value."""
    if isinstance(value, Mapping):
        unknown = set(value) - {"low", "high", "log"}
        if unknown or not {"low", "high"} <= set(value):
            raise ValueError(f"{where}: a range is {{low: ..., high: ..., log: true|false}}, got {dict(value)}")
        low, high, log = value["low"], value["high"], bool(value.get("log", False))
        if not all(isinstance(end, int | float) and not isinstance(end, bool) for end in (low, high)):
            raise ValueError(f"{where}: low and high must be numbers, got {low!r} and {high!r}")
        if low > high:
            raise ValueError(f"{where}: low {low} is above high {high}")
        if log and low <= 0:
            raise ValueError(f"{where}: a log range must start above 0, got low {low}")
        if isinstance(low, int) and isinstance(high, int):
            return Ints(low, high, log)
        return Floats(float(low), float(high), log)
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError(f"{where}: an empty list of choices")
        return Choice(tuple(value))
    return Choice((value,))
