"""`tuneship tune`: Triton Model Analyzer's quick search, on the embedded server, for text and image classifiers.

The pipeline's models (or a single-model classifier, which runs its graph itself) are copied into a scratch
repository served in explicit model-control mode; each candidate configuration (max batch size, dynamic-batching
queue delay, model instances, ONNX Runtime intra-op threads) is written there, the models are reloaded, and the
project's load generator measures it on real items at one concurrency (`measure`). The highest throughput whose
latency percentile stays within the budget wins (`search`); its configs are written back into the real repository
through the repository layer, atomically and under its lock (`apply`): a polling server reloads them, others on
restart or `tuneship deploy load`. Precision is swept too when the export kept its gated variants (`tuneship
export --keep-variants`): each other variant is measured at the best batching found for the published one, and a
chosen variant is published as the model's next version. A batch-invariant variant is preferred, as the exporter
does, over a faster one that is not, within `invariance_margin`. `report` prints, charts and saves what was found.
"""

from __future__ import annotations

from tuneship.lazy import lazy_names

# Public names load on first use, so the command's dispatcher imports this package cheaply.
_WHERE = {
    "tune": "measure", "PERCENTILES": "options", "REPORTS": "options", "TuneError": "options",
    "TuneOptions": "options", "TuneReport": "report", "single_model_advice": "report", "header": "report",
    "plot": "report", "row": "report", "save": "report", "write_back": "apply", "Candidate": "search",
    "Trial": "search", "choose": "search", "frontier": "search", "graph_step": "search", "kept_variants": "search",
    "pipeline_models": "search",
}
__all__ = sorted(_WHERE)
__getattr__ = lazy_names(__name__, {name: f"tuneship.tuning.{module}" for name, module in _WHERE.items()})
