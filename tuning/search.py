"""The search space and the choice: the candidates of a pipeline, its kept precision variants, which trial wins."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from tuneship.repository import REPORT_FILE
from tuneship.tuning.options import TuneError, TuneOptions


@dataclass(frozen=True)
class Candidate:
    max_batch_size: int
    queue_delay_us: int
    instance_count: int
    intra_op_threads: int
    variant: str = ""  # a kept precision variant; "" is the published one

    def describe(self) -> str:
        threads = self.intra_op_threads or "all"
        variant = f" {self.variant}" if self.variant else ""
        return (f"batch<={self.max_batch_size} delay {self.queue_delay_us}us x{self.instance_count} "
                f"threads {threads}{variant}")


@dataclass
class Trial:
    candidate: Candidate
    current: bool
    texts_per_second: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    errors: int = 0
    note: str = ""
    batch_variation: float | None = None  # the variant's, as the exporter measured it (None: not measured)

    def within(self, percentile: int, budget_ms: float) -> bool:
        return not self.note and self.errors == 0 and self.latency_ms.get(f"p{percentile}", 1e18) <= budget_ms


@dataclass
class KeptVariant:
    name: str
    path: Path
    graph_level: int
    batch_variation: float | None


def pipeline_models(repository: Path, model: str) -> tuple[mc.ModelConfig, list[mc.ModelConfig]]:
    """(the model callers use, the models it schedules): an ensemble and its steps, or a single-model classifier and no
    steps (it runs its graph itself)."""
    from tuneship.repository import Pipeline, RepositoryError, config_path
    from tuneship.tasks import task_of_config

    try:
        pipeline = Pipeline(repository, model)
        if pipeline.caller is None:
            raise TuneError(f"{config_path(repository, model)} does not exist: is the model in this repository? "
                            "(--model-repository)")
        served = task_of_config(pipeline.caller)
        if pipeline.layout == "single":
            return pipeline.caller, []
        if pipeline.layout != "ensemble" or served is None or not served.tunable:
            what = f"a {served.description} model" if served is not None else "not a tuneship task's model"
            raise TuneError(f"{model}: tuneship tune measures classifier ensembles (TEXT or IMAGE in); this model "
                            f"is {what}")
        steps = [pipeline.config(step) for step in pipeline.models[:-1]]
    except RepositoryError as error:  # ExportError is one
        raise TuneError(str(error)) from None
    if not any(config.platform == "onnxruntime_onnx" for config in steps):
        raise TuneError(f"{model}: no ONNX Runtime model among its steps; only ONNX pipelines are tuned")
    return pipeline.caller, steps


def kept_variants(repository: Path, model: str, read_index: bool = True) -> tuple[str, float | None,
                                                                                 list[KeptVariant]]:
    """(the published variant's name, its batch variation, the other variants the export kept; none when
    `read_index` is false)."""
    from tuneship.exporter import VARIANTS_FOLDER, VARIANTS_INDEX
    from tuneship.repository import existing_versions

    report_path = repository / model / REPORT_FILE
    report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.is_file() else {}
    published = str(report.get("tuned_variant") or report.get("chosen") or "")
    variation = next((v.get("batch_variation") for v in report.get("variants", []) if v.get("name") == published),
                     None)
    versions = existing_versions(repository / model)
    index = repository / model / str(versions[-1]) / VARIANTS_FOLDER / VARIANTS_INDEX if versions else None
    if not read_index or index is None or not index.is_file():
        return published, variation, []
    try:
        kept = [KeptVariant(str(e["name"]), index.parent / str(e["file"]), int(e.get("graph_level", 0)),
                            e.get("batch_variation")) for e in json.loads(index.read_text(encoding="utf-8"))]
    except (ValueError, KeyError, TypeError) as error:
        raise TuneError(f"{index}: not a variants index the exporter wrote ({error}); export again with "
                        "--keep-variants, or tune with --no-variants") from None
    for entry in kept:
        if entry.name == published:
            variation = entry.batch_variation
    return published, variation, [k for k in kept if k.name != published and k.path.is_file()]


def runs_graph(config: mc.ModelConfig) -> bool:
    """The model that runs the ONNX graph: the ensemble's ONNX Runtime step, or a single-model classifier."""
    from tuneship.repository import is_single_model

    return config.platform == "onnxruntime_onnx" or is_single_model(config)


def graph_step(ensemble: mc.ModelConfig, steps: Sequence[mc.ModelConfig]) -> mc.ModelConfig:
    return next(c for c in [*steps, ensemble] if runs_graph(c))


def current_candidate(model: mc.ModelConfig) -> Candidate:
    threads = model.parameters["intra_op_thread_count"].string_value if "intra_op_thread_count" in \
        model.parameters else "0"
    count = model.instance_group[0].count if model.instance_group else 1
    return Candidate(model.max_batch_size, model.dynamic_batching.max_queue_delay_microseconds, count,
                     int(threads or 0))


def candidates(options: TuneOptions, current: Candidate) -> list[Candidate]:
    grid = [Candidate(*values) for values in itertools.product(
        options.max_batch_sizes, options.queue_delays_us, options.instance_counts, options.intra_op_threads)]
    return [current] + [c for c in grid if c != current]


def choose(trials: Sequence[Trial], percentile: int, budget_ms: float,
           invariance_margin: float = 0.10) -> tuple[Trial | None, str]:
    """The highest throughput within the budget; a tie (within 2%) goes to the lower latency. A trial whose
    variant's answers move with their batch-mates gives way to a batch-invariant one within `invariance_margin`
    of its throughput."""
    fitting = [t for t in trials if t.within(percentile, budget_ms)]
    if not fitting:
        fastest = min((t for t in trials if t.latency_ms), key=lambda t: t.latency_ms[f"p{percentile}"],
                      default=None)
        lowest = f"; the lowest p{percentile} measured was {fastest.latency_ms[f'p{percentile}']:.1f} ms" if fastest \
            else ""
        return None, f"no configuration kept p{percentile} within {budget_ms:g} ms{lowest}"

    def best(pool: Sequence[Trial]) -> Trial:
        top = max(t.texts_per_second for t in pool)
        tied = [t for t in pool if t.texts_per_second >= 0.98 * top]
        return min(tied, key=lambda t: t.latency_ms[f"p{percentile}"])

    chosen = best(fitting)
    reason = (f"highest throughput with p{percentile} <= {budget_ms:g} ms: {chosen.texts_per_second:.0f} "
              f"texts/s at p{percentile} {chosen.latency_ms[f'p{percentile}']:.1f} ms")
    if not _invariant(chosen):
        steady = [t for t in fitting if _invariant(t)]
        if steady:
            alternative = best(steady)
            if alternative.texts_per_second >= (1 - invariance_margin) * chosen.texts_per_second:
                reason = (f"{alternative.candidate.describe()} is batch-invariant and within "
                          f"{invariance_margin:.0%} of the fastest ({chosen.texts_per_second:.0f} texts/s, answers "
                          f"moving by up to {chosen.batch_variation:.1e} with their batch-mates): "
                          f"{alternative.texts_per_second:.0f} texts/s at p{percentile} "
                          f"{alternative.latency_ms[f'p{percentile}']:.1f} ms")
                chosen = alternative
    return chosen, reason


def _invariant(trial: Trial) -> bool:
    from tuneship.exporter import INVARIANCE_TOLERANCE

    return trial.batch_variation is None or trial.batch_variation <= INVARIANCE_TOLERANCE


def frontier(trials: Sequence[Trial], percentile: int) -> list[Trial]:
    """The measured configurations no other one beats on both throughput and latency, by throughput."""
    measured = [t for t in trials if t.latency_ms and not t.note and not t.errors]
    key = f"p{percentile}"
    return sorted((t for t in measured if not any(
        (o.texts_per_second >= t.texts_per_second and o.latency_ms[key] < t.latency_ms[key]) or
        (o.texts_per_second > t.texts_per_second and o.latency_ms[key] <= t.latency_ms[key]) for o in measured)),
        key=lambda t: t.texts_per_second)
