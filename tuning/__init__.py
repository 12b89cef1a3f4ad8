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

from tuneship.tuning.apply import write_back
from tuneship.tuning.measure import tune
from tuneship.tuning.options import PERCENTILES, REPORTS, TuneError, TuneOptions
from tuneship.tuning.report import TuneReport, fused_advice, header, plot, row, save
from tuneship.tuning.search import Candidate, Trial, choose, frontier, graph_step, kept_variants, pipeline_models

__all__ = ["PERCENTILES", "REPORTS", "Candidate", "Trial", "TuneError", "TuneOptions", "TuneReport", "choose",
           "frontier", "fused_advice", "graph_step", "header", "kept_variants", "pipeline_models", "plot", "row",
           "save", "tune", "write_back"]
