"""`tuneship tune`: Triton Model Analyzer's quick search, on the embedded server, for text and image classifiers.

The pipeline's models are copied into a scratch repository served in explicit model-control mode; each candidate
configuration (max batch size, dynamic-batching queue delay, model instances, ONNX Runtime intra-op threads) is
written there, the models are reloaded, and the project's load generator measures it on real texts at one
concurrency. The highest throughput whose latency percentile stays within the budget wins; its configs are
written back into the real repository atomically (a polling server reloads them; others on restart or
`tuneship deploy load`). Precision is not swept: the repository holds the one variant the exporter's gate chose.
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
    model: str = field(metadata={"help": "the ensemble to tune (a text or image classifier)"})
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


@dataclass(frozen=True)
class Candidate:
    max_batch_size: int
    queue_delay_us: int
    instance_count: int
    intra_op_threads: int

    def describe(self) -> str:
        threads = self.intra_op_threads or "all"
        return (f"batch<={self.max_batch_size} delay {self.queue_delay_us}us x{self.instance_count} "
                f"threads {threads}")


@dataclass
class Trial:
    candidate: Candidate
    current: bool
    texts_per_second: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    errors: int = 0
    note: str = ""

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


def _read(path: Path) -> mc.ModelConfig:
    from tuneship.exporter.model_configs import parse_pbtxt

    if not path.is_file():
        raise TuneError(f"{path} does not exist: is the model in this repository? (--model-repository)")
    return parse_pbtxt(path.read_text(encoding="utf-8"))


def pipeline_models(repository: Path, model: str) -> tuple[mc.ModelConfig, list[mc.ModelConfig]]:
    ensemble = _read(repository / model / "config.pbtxt")
    if ensemble.platform != "ensemble" or [i.name for i in ensemble.input] not in (["TEXT"], ["IMAGE"]):
        raise TuneError(f"{model}: tuneship tune measures classifier ensembles (TEXT or IMAGE in); this model is "
                        "not one")
    steps = [_read(repository / step.model_name / "config.pbtxt") for step in ensemble.ensemble_scheduling.step]
    if not any(config.platform == "onnxruntime_onnx" for config in steps):
        raise TuneError(f"{model}: no ONNX Runtime model among its steps; only ONNX pipelines are tuned")
    return ensemble, steps


def current_candidate(steps: Sequence[mc.ModelConfig]) -> Candidate:
    model = next(c for c in steps if c.platform == "onnxruntime_onnx")
    threads = model.parameters["intra_op_thread_count"].string_value if "intra_op_thread_count" in \
        model.parameters else "0"
    count = model.instance_group[0].count if model.instance_group else 1
    return Candidate(model.max_batch_size, model.dynamic_batching.max_queue_delay_microseconds, count,
                     int(threads or 0))


def candidates(options: TuneOptions, current: Candidate) -> list[Candidate]:
    grid = [Candidate(*values) for values in itertools.product(
        options.max_batch_sizes, options.queue_delays_us, options.instance_counts, options.intra_op_threads)]
    return [current] + [c for c in grid if c != current]


def apply(candidate: Candidate, ensemble: mc.ModelConfig, steps: Sequence[mc.ModelConfig]) -> list[mc.ModelConfig]:
    """The pipeline's configs with the candidate's values. Every model of an ensemble takes the same largest
    batch (Triton refuses an ensemble whose batch exceeds a step's); queue delays apply to the batching steps
    before the model (the tokenizer) and to the model itself."""
    configs = []
    for original in [*steps, ensemble]:
        config = mc.ModelConfig()
        config.CopyFrom(original)
        config.max_batch_size = candidate.max_batch_size
        if config.platform == "onnxruntime_onnx":
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
        elif config.HasField("dynamic_batching") and config.dynamic_batching.max_queue_delay_microseconds:
            config.dynamic_batching.max_queue_delay_microseconds = candidate.queue_delay_us
        configs.append(config)
    return configs


def _write(repository: Path, configs: Sequence[mc.ModelConfig]) -> list[str]:
    from tuneship.exporter.model_configs import to_pbtxt
    from tuneship.exporter.repository import write_text_atomic

    written = []
    for config in configs:
        path = repository / config.name / "config.pbtxt"
        write_text_atomic(path, to_pbtxt(config))
        written.append(str(path))
    return written


def _measure(url: str, options: TuneOptions, texts: Sequence[str], trial: Trial) -> None:
    from tuneship.client.bench import run_bench

    [result] = asyncio.run(run_bench(url, options.model, [options.concurrency], texts, options.batch_size,
                                     options.window_s, max_windows=3, progress=False))
    trial.texts_per_second = round(result.texts_per_second, 1)
    trial.latency_ms = {f"p{p}": round(getattr(result, f"p{p}_ms"), 2) for p in PERCENTILES}
    trial.errors = result.errors


def choose(trials: Sequence[Trial], percentile: int, budget_ms: float) -> tuple[Trial | None, str]:
    """The highest throughput within the budget; a tie (within 2%) goes to the lower latency."""
    fitting = [t for t in trials if t.within(percentile, budget_ms)]
    if not fitting:
        fastest = min((t for t in trials if t.latency_ms), key=lambda t: t.latency_ms[f"p{percentile}"],
                      default=None)
        best = f"; the lowest p{percentile} measured was {fastest.latency_ms[f'p{percentile}']:.1f} ms" if fastest \
            else ""
        return None, f"no configuration kept p{percentile} within {budget_ms:g} ms{best}"
    top = max(t.texts_per_second for t in fitting)
    tied = [t for t in fitting if t.texts_per_second >= 0.98 * top]
    chosen = min(tied, key=lambda t: t.latency_ms[f"p{percentile}"])
    return chosen, (f"highest throughput with p{percentile} <= {budget_ms:g} ms: {chosen.texts_per_second:.0f} "
                    f"texts/s at p{percentile} {chosen.latency_ms[f'p{percentile}']:.1f} ms")


def tune(options: TuneOptions) -> TuneReport:
    from tuneship.client import TritonClient
    from tuneship.client.bench import builtin_reviews
    from tuneship.deploy.server import ServeOptions, TritonServer
    from tuneship.exporter.locking import repository_lock

    if options.percentile not in PERCENTILES:
        raise TuneError(f"--percentile {options.percentile}: choose one of {', '.join(map(str, PERCENTILES))}")
    ensemble, steps = pipeline_models(options.repository, options.model)
    if ensemble.input[0].name == "IMAGE" and not options.texts:
        raise TuneError(f"{options.model} is an image classifier: give images to send (--images FOLDER)")
    texts = list(options.texts) or builtin_reviews()
    current = current_candidate(steps)
    trials = [Trial(c, current=c == current) for c in candidates(options, current)]
    print(f"tuning {options.model}: {len(trials)} configurations, concurrency {options.concurrency}, "
          f"budget p{options.percentile} <= {options.latency_budget_ms:g} ms")
    print(header())
    with tempfile.TemporaryDirectory(prefix="tuneship-tune-") as scratch_dir:
        scratch = Path(scratch_dir)
        for config in [*steps, ensemble]:
            shutil.copytree(options.repository / config.name, scratch / config.name,
                            ignore=shutil.ignore_patterns("__pycache__", ".*", *REPORTS))
        serve = ServeOptions(model_repository=scratch, grpc_port=0, http_port=0, metrics_port=0,
                             model_control_mode="explicit", load_models=("*",), heal=False)
        with TritonServer(serve) as server, TritonClient(server.grpc_url) as client:
            for trial in trials:
                _write(scratch, apply(trial.candidate, ensemble, steps))
                try:
                    for config in [*steps, ensemble]:
                        client.load_model(config.name)
                    _measure(server.grpc_url, options, texts, trial)
                except Exception as error:  # a configuration Triton refuses is a result, not the end of the run
                    trial.note = f"failed: {str(error).splitlines()[0][:120]}"
                print(row(trial, options.percentile, options.latency_budget_ms), flush=True)
    chosen, reason = choose(trials, options.percentile, options.latency_budget_ms)
    written: list[str] = []
    if chosen is not None and options.write:
        with repository_lock(options.repository, 600.0, f"tuneship tune of {options.model}"):
            written = _write(options.repository, apply(chosen.candidate, ensemble, steps))
    return TuneReport(model=options.model, percentile=options.percentile,
                      latency_budget_ms=options.latency_budget_ms, concurrency=options.concurrency, trials=trials,
                      chosen=chosen, written=written, reason=reason)


def header() -> str:
    return f"  {'configuration':<52}{'texts/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}  verdict"


def row(trial: Trial, percentile: int, budget_ms: float, chosen: bool = False) -> str:
    name = trial.candidate.describe() + (" (current)" if trial.current else "")
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
        if trial.current:
            axis.scatter([trial.texts_per_second], [trial.latency_ms[key]], marker="s", s=80, facecolors="none",
                         edgecolors="black", label="current")
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
