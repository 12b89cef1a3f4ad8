"""`tuneship tune`: Triton Model Analyzer's quick search, on the embedded server, for text and image classifiers.

The pipeline's models (or a fused classifier, which runs its graph itself) are copied into a scratch repository
served in explicit model-control mode; each candidate configuration (max batch size, dynamic-batching queue delay,
model instances, ONNX Runtime intra-op threads) is written there, the models are reloaded, and the project's load
generator measures it on real texts at one concurrency. The highest throughput whose latency percentile stays within
the budget wins; its configs are written back into the real repository atomically (a polling server reloads them;
others on restart or `tuneship deploy load`). Precision is swept too when the export kept its gated variants
(`tuneship export --keep-variants`): each other variant is measured at the best batching found for the published
one, and a chosen variant is published as the model's next version. A batch-invariant variant is preferred, as the
exporter does, over a faster one that is not, within `invariance_margin`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tritonclient.grpc import model_config_pb2 as mc

PERCENTILES = (50, 90, 95, 99)
REPORTS = ("export_report.json", "tuning_report.json", "tuning.png", "updates.jsonl", "update_report.json")


class TuneError(Exception):
    """The model cannot be tuned as asked; the message says why and what to do."""


@dataclass
class TuneOptions:
    model: str = field(metadata={
        "help": "the classifier to tune (a text or image ensemble, or a fused text classifier)"})
    latency_budget_ms: float = field(metadata={"help": "largest allowed latency percentile, milliseconds"})
    repository: Path = field(default=Path("model_repository"), metadata={"help": "Triton model repository"})
    percentile: int = field(default=99, metadata={"help": "which latency percentile the budget bounds"})
    concurrency: int = field(default=8, metadata={"help": "requests in flight while measuring"})
    batch_size: int = field(default=1, metadata={"help": "texts per request"})
    window_s: float = field(default=2.0, metadata={"help": "seconds per measurement window (up to 3 windows)"})
    max_batch_sizes: tuple[int, ...] = field(default=(16, 64), metadata={"help": "max_batch_size values"})
    queue_delays_us: tuple[int, ...] = field(default=(0, 2000, 8000), metadata={
        "help": "dynamic batcher max_queue_delay_microseconds values"})
    instance_counts: tuple[int, ...] = field(default=(1, 2), metadata={"help": "model instance counts"})
    intra_op_threads: tuple[int, ...] = field(default=(0, 1), metadata={
        "help": "ONNX Runtime intra-op thread counts (0: all cores)"})
    texts: Sequence[Any] = field(default=(), metadata={
        "help": "what one request row carries: texts (default: the bundled reviews), or encoded images for an "
                "image classifier (required)"})
    write: bool = field(default=True, metadata={"help": "write the chosen configuration back"})
    variants: bool = field(default=True, metadata={
        "help": "also sweep the precision variants the export kept (tuneship export --keep-variants)"})
    invariance_margin: float = field(default=0.10, metadata={
        "help": "a batch-invariant variant is taken over a faster one that is not, up to this share slower"})
    compare_fused: bool = field(default=True, metadata={
        "help": "a text ensemble: also measure the same graph in the fused layout (tuneship export --layout fused) "
                "at the chosen settings, as advice (nothing is switched)"})


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
class TuneReport:
    model: str
    percentile: int
    latency_budget_ms: float
    concurrency: int
    trials: list[Trial]
    chosen: Trial | None
    written: list[str]
    reason: str
    published_variant: str = ""  # the variant chosen by the export (or an earlier tune)
    fused_layout: Trial | None = None  # the same graph and settings as one fused model, measured as advice


def pipeline_models(repository: Path, model: str) -> tuple[mc.ModelConfig, list[mc.ModelConfig]]:
    """(the model callers use, the models it schedules): an ensemble and its steps, or a fused classifier and no
    steps (it runs its graph itself)."""
    from tuneship.exporter.errors import ExportError
    from tuneship.exporter.repository import Pipeline
    from tuneship.tasks import task_of_config

    try:
        pipeline = Pipeline(repository, model)
        if pipeline.caller is None:
            raise TuneError(f"{repository / model / 'config.pbtxt'} does not exist: is the model in this repository? "
                            "(--model-repository)")
        served = task_of_config(pipeline.caller)
        if pipeline.layout == "fused":
            return pipeline.caller, []
        if pipeline.layout != "ensemble" or served is None or not served.tunable:
            what = f"a {served.description} model" if served is not None else "not a tuneship task's model"
            raise TuneError(f"{model}: tuneship tune measures classifier ensembles (TEXT or IMAGE in); this model "
                            f"is {what}")
        steps = [pipeline.config(step) for step in pipeline.models[:-1]]
    except ExportError as error:
        raise TuneError(str(error)) from None
    if not any(config.platform == "onnxruntime_onnx" for config in steps):
        raise TuneError(f"{model}: no ONNX Runtime model among its steps; only ONNX pipelines are tuned")
    return pipeline.caller, steps


@dataclass
class KeptVariant:
    name: str
    path: Path
    graph_level: int
    batch_variation: float | None


def kept_variants(repository: Path, model: str, read_index: bool = True) -> tuple[str, float | None,
                                                                                 list[KeptVariant]]:
    """(the published variant's name, its batch variation, the other variants the export kept; none when
    `read_index` is false)."""
    from tuneship.exporter.publishing import VARIANTS_FOLDER, VARIANTS_INDEX
    from tuneship.exporter.repository import existing_versions

    report_path = repository / model / "export_report.json"
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
    """The model that runs the ONNX graph: the ensemble's ONNX Runtime step, or a fused classifier."""
    from tuneship.exporter.model_configs import is_fused

    return config.platform == "onnxruntime_onnx" or is_fused(config)


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


def apply(candidate: Candidate, ensemble: mc.ModelConfig, steps: Sequence[mc.ModelConfig],
          graph_level: int | None = None) -> list[mc.ModelConfig]:
    """The pipeline's configs with the candidate's values. Every model of an ensemble takes the same largest
    batch (Triton refuses an ensemble whose batch exceeds a step's); queue delays apply to the batching steps
    before the model (the tokenizer) and to the model itself. `graph_level`: the ONNX Runtime graph level the
    candidate's variant is served at (None: as configured)."""
    configs = []
    for original in [*steps, ensemble]:
        config = mc.ModelConfig()
        config.CopyFrom(original)
        config.max_batch_size = candidate.max_batch_size
        if runs_graph(config):
            config.dynamic_batching.max_queue_delay_microseconds = candidate.queue_delay_us
            kept = [b for b in config.dynamic_batching.preferred_batch_size if b <= candidate.max_batch_size]
            del config.dynamic_batching.preferred_batch_size[:]
            config.dynamic_batching.preferred_batch_size.extend(kept)
            if config.instance_group:
                config.instance_group[0].count = candidate.instance_count
            if candidate.intra_op_threads:
                config.parameters["intra_op_thread_count"].string_value = str(candidate.intra_op_threads)
            elif "intra_op_thread_count" in config.parameters:
                del config.parameters["intra_op_thread_count"]
            if graph_level is not None and config.platform == "onnxruntime_onnx":
                config.optimization.graph.level = graph_level
            elif graph_level is not None:  # a fused classifier sets up its own ONNX Runtime session
                config.parameters["graph_level"].string_value = str(graph_level)
        elif config.HasField("dynamic_batching") and config.dynamic_batching.max_queue_delay_microseconds:
            config.dynamic_batching.max_queue_delay_microseconds = candidate.queue_delay_us
        configs.append(config)
    return configs


def _write(repository: Path, configs: Sequence[mc.ModelConfig]) -> list[str]:
    from tuneship.exporter.repository import write_config

    return [str(write_config(repository, config)) for config in configs]


def _measure(url: str, options: TuneOptions, texts: Sequence[str], trial: Trial, model: str = "") -> None:
    from tuneship.client.bench import run_bench

    [result] = asyncio.run(run_bench(url, model or options.model, [options.concurrency], texts, options.batch_size,
                                     options.window_s, max_windows=3, progress=False))
    trial.texts_per_second = round(result.texts_per_second, 1)
    trial.latency_ms = {f"p{p}": round(getattr(result, f"p{p}_ms"), 2) for p in PERCENTILES}
    trial.errors = result.errors


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
    from tuneship.exporter.selection import INVARIANCE_TOLERANCE

    return trial.batch_variation is None or trial.batch_variation <= INVARIANCE_TOLERANCE


def tune(options: TuneOptions) -> TuneReport:
    from tuneship.client import TritonClient
    from tuneship.client.bench import builtin_reviews
    from tuneship.deploy.server import ServeOptions, TritonServer

    if options.percentile not in PERCENTILES:
        raise TuneError(f"--percentile {options.percentile}: choose one of {', '.join(map(str, PERCENTILES))}")
    from tuneship.tasks import task_of_config

    ensemble, steps = pipeline_models(options.repository, options.model)
    served = task_of_config(ensemble)
    if served is not None and served.item_source != "texts" and not options.texts:
        raise TuneError(f"{options.model} is an {served.description} model: give {served.item_source} to send "
                        f"(--{served.item_source} FOLDER)")
    texts = list(options.texts) or builtin_reviews()
    published, variation, others = kept_variants(options.repository, options.model, options.variants)
    onnx_step = graph_step(ensemble, steps)
    current = current_candidate(onnx_step)
    trials = [Trial(c, current=c == current, batch_variation=variation) for c in candidates(options, current)]
    swept = f", then {len(others)} more precision variant(s)" if others else ""
    print(f"tuning {options.model}: {len(trials)} configurations{swept}, concurrency {options.concurrency}, "
          f"budget p{options.percentile} <= {options.latency_budget_ms:g} ms")
    if options.variants and not others:
        print("note: no other precision variants kept with this export (tuneship export --keep-variants): "
              f"measuring {published or 'the published variant'} only")
    print(header())
    with tempfile.TemporaryDirectory(prefix="tuneship-tune-") as scratch_dir:
        scratch = Path(scratch_dir)
        for config in [*steps, ensemble]:
            shutil.copytree(options.repository / config.name, scratch / config.name,
                            ignore=shutil.ignore_patterns("__pycache__", ".*", "variants", *REPORTS))
        serve = ServeOptions(model_repository=scratch, grpc_port=0, http_port=0, metrics_port=0,
                             model_control_mode="explicit", load_models=("*",), heal=False)
        with TritonServer(serve) as server, TritonClient(server.grpc_url) as client:
            def run(trial: Trial, kept: KeptVariant | None = None) -> None:
                if kept is not None:
                    _install(scratch, onnx_step, kept.path)
                _write(scratch, apply(trial.candidate, ensemble, steps, kept.graph_level if kept else None))
                try:
                    for config in [*steps, ensemble]:
                        client.load_model(config.name)
                    _measure(server.grpc_url, options, texts, trial)
                except Exception as error:  # a configuration Triton refuses is a result, not the end of the run
                    trial.note = f"failed: {str(error).splitlines()[0][:120]}"
                print(row(trial, options.percentile, options.latency_budget_ms), flush=True)

            for trial in trials:
                run(trial)
            if others:
                # Each other precision at the batching the published variant measured best (or as configured).
                base, _ = choose(trials, options.percentile, options.latency_budget_ms, options.invariance_margin)
                layout = base.candidate if base is not None else current
                for kept in others:
                    trial = Trial(Candidate(layout.max_batch_size, layout.queue_delay_us, layout.instance_count,
                                            layout.intra_op_threads, kept.name), current=False,
                                  batch_variation=kept.batch_variation)
                    trials.append(trial)
                    run(trial, kept)
            chosen, reason = choose(trials, options.percentile, options.latency_budget_ms, options.invariance_margin)
            fused_trial: Trial | None = None
            if options.compare_fused and ensemble.platform == "ensemble" and served is not None \
                    and "fused" in served.layouts \
                    and onnx_step.platform == "onnxruntime_onnx":
                best = chosen.candidate if chosen is not None else current
                kept_best = next((k for k in others if k.name == best.variant), None)
                fused_trial = Trial(best, current=False)
                try:
                    name = _fused_copy(options, scratch, best, kept_best)
                    client.load_model(name)
                    _measure(server.grpc_url, options, texts, fused_trial, name)
                except Exception as error:  # advice only: a failure is reported, not raised
                    fused_trial.note = f"failed: {str(error).splitlines()[0][:120]}"
                print(row(fused_trial, options.percentile, options.latency_budget_ms, label="fused layout"),
                      flush=True)
    written: list[str] = []
    if chosen is not None and options.write:
        kept_chosen = next((k for k in others if k.name == chosen.candidate.variant), None)
        written = write_back(options, ensemble, steps, onnx_step, chosen.candidate, kept_chosen)
    return TuneReport(model=options.model, percentile=options.percentile,
                      latency_budget_ms=options.latency_budget_ms, concurrency=options.concurrency, trials=trials,
                      chosen=chosen, written=written, reason=reason, published_variant=published,
                      fused_layout=fused_trial)


def _fused_copy(options: TuneOptions, scratch: Path, candidate: Candidate, kept: KeptVariant | None) -> str:
    """The published ensemble as one fused model beside it in the scratch repository, at `candidate`'s settings
    (and precision variant)."""
    from tuneship.exporter.publishing import fused_from_ensemble
    from tuneship.exporter.repository import read_config

    name = f"{options.model}_fused_layout"
    version = fused_from_ensemble(options.repository, options.model, scratch, name)
    if kept is not None:
        shutil.copyfile(kept.path, scratch / name / str(version) / "model.onnx")
    config = read_config(scratch, name)
    _write(scratch, apply(candidate, config, [], kept.graph_level if kept else None))
    return name


def fused_advice(report: TuneReport) -> str:
    """One line comparing the fused layout with the chosen configuration, or "" when not measured."""
    fused, chosen = report.fused_layout, report.chosen
    if fused is None or fused.note or not fused.latency_ms or chosen is None or not chosen.texts_per_second:
        return ""
    key = f"p{report.percentile}"
    gain = fused.texts_per_second / chosen.texts_per_second - 1
    return (f"the same graph and settings in the fused layout (one Python model; `tuneship export --layout fused`, "
            f"under a new name) measured {fused.texts_per_second:.0f} texts/s at {key} {fused.latency_ms[key]:.1f} "
            f"ms: {gain:+.0%} texts/s against the chosen configuration ({chosen.latency_ms[key]:.1f} ms)")


def _install(repository: Path, onnx_step: mc.ModelConfig, source: Path) -> None:
    """Put a variant's ONNX file in place of the latest version's model file (in the scratch repository)."""
    from tuneship.exporter.repository import existing_versions

    folder = repository / onnx_step.name
    target = folder / str(existing_versions(folder)[-1]) / (onnx_step.default_model_filename or "model.onnx")
    shutil.copyfile(source, target)


def write_back(options: TuneOptions, ensemble: mc.ModelConfig, steps: Sequence[mc.ModelConfig],
               onnx_step: mc.ModelConfig, chosen: Candidate, kept: KeptVariant | None) -> list[str]:
    """The chosen configs, under the repository lock; a chosen variant other than the published one becomes the
    ONNX model's next version (atomically, as an export publishes) and the export report says which is served."""
    from tuneship.exporter.locking import repository_lock
    from tuneship.exporter.repository import latest_version, publish_copy, write_text_atomic

    configs = apply(chosen, ensemble, steps, kept.graph_level if kept else None)
    written = []
    with repository_lock(options.repository, 600.0, f"tuneship tune of {options.model}"):
        if kept is not None:
            model_config = next(c for c in configs if c.name == onnx_step.name)
            filename = onnx_step.default_model_filename or "model.onnx"
            # The version's other files (a fused classifier's tokenizer, labels, code) come along; the kept
            # variants too, linked rather than copied where the file system allows.
            version = publish_copy(latest_version(options.repository, onnx_step.name), options.repository,
                                   model_config, replace={filename: kept.path}, link=True)
            written.append(str(options.repository / onnx_step.name / str(version) / filename))
            configs = [c for c in configs if c.name != onnx_step.name]
            report_path = options.repository / options.model / "export_report.json"
            if report_path.is_file():
                report = json.loads(report_path.read_text(encoding="utf-8"))
                report["tuned_variant"] = kept.name
                write_text_atomic(report_path, json.dumps(report, indent=2) + "\n")
        written += _write(options.repository, configs)
    return written


def header() -> str:
    return f"  {'configuration':<52}{'texts/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}  verdict"


def row(trial: Trial, percentile: int, budget_ms: float, chosen: bool = False, label: str = "") -> str:
    name = trial.candidate.describe() + (" (current)" if trial.current else "") + (f" [{label}]" if label else "")
    if trial.note:
        return f"  {name:<52}{trial.note}"
    verdict = "within budget" if trial.within(percentile, budget_ms) else "over budget"
    if trial.errors:
        verdict = f"{trial.errors} errors"
    mark = "*" if chosen else " "
    return (f"{mark} {name:<52}{trial.texts_per_second:>9.1f}{trial.latency_ms['p50']:>9.1f}"
            f"{trial.latency_ms['p95']:>9.1f}{trial.latency_ms['p99']:>9.1f}{trial.errors:>8}  {verdict}")


def frontier(trials: Sequence[Trial], percentile: int) -> list[Trial]:
    """The measured configurations no other one beats on both throughput and latency, by throughput."""
    measured = [t for t in trials if t.latency_ms and not t.note and not t.errors]
    key = f"p{percentile}"
    return sorted((t for t in measured if not any(
        (o.texts_per_second >= t.texts_per_second and o.latency_ms[key] < t.latency_ms[key]) or
        (o.texts_per_second > t.texts_per_second and o.latency_ms[key] <= t.latency_ms[key]) for o in measured)),
        key=lambda t: t.texts_per_second)


def plot(report: TuneReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = f"p{report.percentile}"
    measured = [t for t in report.trials if t.latency_ms and not t.note]
    fig, axis = plt.subplots(figsize=(8, 5), dpi=100)
    axis.scatter([t.texts_per_second for t in measured], [t.latency_ms[key] for t in measured], color="tab:gray",
                 label="configurations measured")
    line = frontier(report.trials, report.percentile)
    axis.plot([t.texts_per_second for t in line], [t.latency_ms[key] for t in line], "o-", color="tab:blue",
              label="frontier (nothing faster at lower latency)")
    axis.axhline(report.latency_budget_ms, color="tab:red", linestyle="--",
                 label=f"budget {report.latency_budget_ms:g} ms")
    for trial in measured:
        if trial.candidate.variant:  # precision variants, named where they sit
            axis.annotate(trial.candidate.variant, (trial.texts_per_second, trial.latency_ms[key]),
                          textcoords="offset points", xytext=(6, 4), fontsize=8, color="tab:purple")
        if trial.current:
            axis.scatter([trial.texts_per_second], [trial.latency_ms[key]], marker="s", s=80, facecolors="none",
                         edgecolors="black", label="current")
    fused = report.fused_layout
    if fused is not None and fused.latency_ms and not fused.note:
        axis.scatter([fused.texts_per_second], [fused.latency_ms[key]], marker="D", s=70, color="tab:green",
                     zorder=5, label="the chosen settings in the fused layout (advice)")
    if report.chosen is not None:
        axis.scatter([report.chosen.texts_per_second], [report.chosen.latency_ms[key]], marker="*", s=250,
                     color="tab:orange", zorder=5, label=f"chosen: {report.chosen.candidate.describe()}")
    axis.set_xlabel("texts/s")
    axis.set_ylabel(f"{key} latency (ms)")
    axis.set_title(f"{report.model}: throughput and latency at concurrency {report.concurrency}", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def save(report: TuneReport, repository: Path) -> tuple[Path, Path]:
    from tuneship.exporter.repository import write_text_atomic

    folder = repository / report.model
    data = asdict(report)
    json_path, png_path = folder / "tuning_report.json", folder / "tuning.png"
    write_text_atomic(json_path, json.dumps(data, indent=2) + "\n")
    temporary = folder / f".tuning.{os.getpid()}.png"
    plot(report, temporary)
    os.replace(temporary, png_path)
    return json_path, png_path
