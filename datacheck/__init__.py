"""`tuneship data check`: the data before training. Every row is read with its file and line, the texts are
embedded once, and from the same embeddings come label issues (out-of-fold probabilities ranked by cleanlab),
duplicates, conflicts, train/eval leaks and outliers; a report, and with --fix a cleaned copy."""

from __future__ import annotations

from tuneship.lazy import lazy_names

_WHERE = {"CheckOptions": "options", "DataCheckError": "options", "Finding": "findings", "check": "check",
          "CheckReport": "report"}
__all__ = sorted(_WHERE)
__getattr__ = lazy_names(__name__, {name: f"tuneship.datacheck.{module}" for name, module in _WHERE.items()})
