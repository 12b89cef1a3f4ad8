"""`tuneship search`: which base model, method, hyperparameters and export precision, scored on quality and on
served latency together.

Each trial (an Optuna trial, define-by-run over the task's space in tuneship.space) is trained, published through
the export gate into the search's own repository and measured on one embedded Triton (`study`, `trial`,
`measure`); the front of quality against p99 is kept and reported (`report`) and its best trial can be published
(`publish`).
"""

from __future__ import annotations

from tuneship.lazy import lazy_names

_WHERE = {
    "SearchError": "options", "SearchOptions": "options", "SearchReport": "study", "search": "study",
    "Served": "measure", "TritonMeasurer": "measure", "MedianRule": "pruning", "Row": "report", "front": "report",
    "pick": "publish", "publish": "publish",
}
__all__ = sorted(_WHERE)
__getattr__ = lazy_names(__name__, {name: f"tuneship.search.{module}" for name, module in _WHERE.items()})
