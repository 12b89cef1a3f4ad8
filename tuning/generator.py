"""`tuneship tune` of a generator: how many requests decode together (`max_concurrency`, the continuous batch's
rows), measured like a classifier's candidates on a scratch copy served by its own embedded Triton.

Each candidate is written into the scratch copy's config and the model reloaded; `--concurrency` callers then
stream `--max-tokens`-token answers to the shipped review prompts (the generator bench's load). The highest
aggregate tokens/s whose time to first token at `--percentile` (50 or 99) stays within the budget wins, and only
`max_concurrency` is written back (with `max_queue` raised where the chosen value would refuse that many
callers), atomically and under the repository's lock; a running server takes it on its next load.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuneship.repository import TUNING_PLOT, TUNING_REPORT
from tuneship.tuning.options import REPORTS, TuneError, TuneOptions

GENERATOR_PERCENTILES = (50, 99)


@dataclass
class GeneratorTrial:
    max_concurrency: int
    current: bool
    tokens_per_second: float = 0.0
    stream_tokens_per_second: float = 0.0
    ttft_ms: dict[str, float] = field(default_factory=dict)
    errors: int = 0
    note: str = ""

    def within(self, percentile: int, budget_ms: float) -> bool:
        value = self.ttft_ms.get(f"p{percentile}", math.inf)
        return not self.note and self.errors == 0 and value <= budget_ms


@dataclass
class GeneratorTuneReport:
    model: str
    percentile: int
    latency_budget_ms: float
    concurrency: int
    max_tokens: int
    trials: list[GeneratorTrial]
    chosen: GeneratorTrial | None
    reason: str
    written: list[str]


def is_generator(repository: Path, model: str) -> bool:
    from tuneship.repository import RepositoryError, read_config
    from tuneship.tasks import task_of_config

    try:
        config = read_config(repository, model)
    except RepositoryError:  # ExportError is one
        return False
    task = task_of_config(config)
    return task is not None and task.generates


def choose(trials: list[GeneratorTrial], percentile: int, budget_ms: float) -> tuple[GeneratorTrial | None, str]:
    fitting = [t for t in trials if t.within(percentile, budget_ms)]
    key = f"p{percentile}"
    if not fitting:
        measured = [t for t in trials if key in t.ttft_ms and not math.isnan(t.ttft_ms[key])]
        lowest = min((t.ttft_ms[key] for t in measured), default=None)
        more = f"; the lowest measured was {lowest:.0f} ms" if lowest is not None else ""
        return None, f"no max_concurrency kept time to first token p{percentile} within {budget_ms:g} ms{more}"
    top = max(t.tokens_per_second for t in fitting)
    chosen = min((t for t in fitting if t.tokens_per_second >= 0.98 * top), key=lambda t: t.ttft_ms[key])
    return chosen, (f"highest tokens/s with time to first token p{percentile} <= {budget_ms:g} ms: max_concurrency "
                    f"{chosen.max_concurrency}, {chosen.tokens_per_second:.0f} tokens/s at p{percentile} "
                    f"{chosen.ttft_ms[key]:.0f} ms")


HEADER = f"{'max_concurrency':>16}{'tokens/s':>10}{'per stream':>11}{'TTFT p50':>10}{'TTFT p99':>10}{'errors':>8}"


def row(trial: GeneratorTrial, chosen: bool = False) -> str:
    mark = "*" if chosen else ("=" if trial.current else " ")
    if trial.note:
        return f"{mark}{trial.max_concurrency:>15}  {trial.note}"
    return (f"{mark}{trial.max_concurrency:>15}{trial.tokens_per_second:>10.1f}{trial.stream_tokens_per_second:>11.1f}"
            f"{trial.ttft_ms.get('p50', math.nan):>10.0f}{trial.ttft_ms.get('p99', math.nan):>10.0f}"
            f"{trial.errors:>8}")


def _with(config: Any, max_concurrency: int, callers: int) -> Any:
    updated = type(config)()
    updated.CopyFrom(config)
    updated.parameters["max_concurrency"].string_value = str(max_concurrency)
    queue = int(config.parameters["max_queue"].string_value) if "max_queue" in config.parameters else 16
    updated.parameters["max_queue"].string_value = str(max(queue, callers - max_concurrency))
    return updated


def tune_generator(options: TuneOptions) -> GeneratorTuneReport:
    from tuneship.client import TritonClient, builtin_reviews, review_prompts, run_generation_bench
    from tuneship.deploy import ServeOptions, TritonServer
    from tuneship.repository import read_config, repository_lock, write_config

    if options.percentile not in GENERATOR_PERCENTILES:
        raise TuneError(f"--percentile {options.percentile}: a generator's budget bounds time to first token at "
                        f"p50 or p99")
    config = read_config(options.repository, options.model)
    current = int(config.parameters["max_concurrency"].string_value) if "max_concurrency" in config.parameters \
        else 8
    values = [current] + [v for v in dict.fromkeys(options.max_concurrencies) if v != current]
    trials = [GeneratorTrial(v, current=v == current) for v in values]
    prompts = review_prompts(builtin_reviews())
    print(f"tuning generator {options.model}: max_concurrency {', '.join(map(str, values))}; {options.concurrency} "
          f"callers streaming {options.max_tokens} tokens each; budget time to first token p{options.percentile} "
          f"<= {options.latency_budget_ms:g} ms")
    print(HEADER)
    with tempfile.TemporaryDirectory(prefix="tuneship-tune-") as scratch_dir:
        scratch = Path(scratch_dir)
        shutil.copytree(options.repository / options.model, scratch / options.model,
                        ignore=shutil.ignore_patterns("__pycache__", ".*", *REPORTS))
        serve = ServeOptions(model_repository=scratch, grpc_port=0, http_port=0, metrics_port=0,
                             model_control_mode="explicit", load_models=("*",), heal=False)
        with TritonServer(serve) as server, TritonClient(server.grpc_url) as client:
            for trial in trials:
                write_config(scratch, _with(config, trial.max_concurrency, options.concurrency))
                try:
                    client.load_model(options.model)
                    [level] = asyncio.run(run_generation_bench(
                        server.grpc_url, options.model, [options.concurrency], prompts,
                        new_tokens=options.max_tokens, streams=2, progress=False))
                    trial.tokens_per_second = level.aggregate_tokens_per_second
                    trial.stream_tokens_per_second = level.stream_tokens_per_second_p50
                    trial.ttft_ms = {"p50": level.ttft_p50_ms, "p99": level.ttft_p99_ms}
                    trial.errors = level.errors
                except Exception as error:  # a configuration that fails is a result, not the end of the run
                    trial.note = f"failed: {str(error).splitlines()[0][:120]}"
                print(row(trial), flush=True)
    chosen, reason = choose(trials, options.percentile, options.latency_budget_ms)
    written: list[str] = []
    if chosen is not None and options.write:
        with repository_lock(options.repository, what=f"tuneship tune of {options.model}"):
            fresh = read_config(options.repository, options.model)
            written.append(str(write_config(options.repository, _with(fresh, chosen.max_concurrency,
                                                                      options.concurrency))))
    return GeneratorTuneReport(model=options.model, percentile=options.percentile,
                               latency_budget_ms=options.latency_budget_ms, concurrency=options.concurrency,
                               max_tokens=options.max_tokens, trials=trials, chosen=chosen, reason=reason,
                               written=written)


def save_generator_report(report: GeneratorTuneReport, repository: Path) -> tuple[Path, Path | None]:
    from tuneship.png import save_png
    from tuneship.repository import write_text_atomic

    folder = repository / report.model
    json_path, png_path = folder / TUNING_REPORT, folder / TUNING_PLOT
    write_text_atomic(json_path, json.dumps(asdict(report), indent=2) + "\n")

    def figure() -> Any:
        import matplotlib.pyplot as plt

        measured = sorted((t for t in report.trials if not t.note), key=lambda t: t.max_concurrency)
        fig, left = plt.subplots(figsize=(7, 4))
        xs = [t.max_concurrency for t in measured]
        left.plot(xs, [t.tokens_per_second for t in measured], "o-", label="aggregate tokens/s")
        left.set_xlabel("max_concurrency (rows decoded together)")
        left.set_ylabel("tokens/s")
        right = left.twinx()
        key = f"p{report.percentile}"
        right.plot(xs, [t.ttft_ms.get(key, math.nan) for t in measured], "s--", color="tab:red",
                   label=f"TTFT {key} ms")
        right.axhline(report.latency_budget_ms, color="tab:red", linewidth=0.8, linestyle=":")
        right.set_ylabel(f"time to first token {key} (ms)")
        left.set_title(f"{report.model}: {report.concurrency} callers, {report.max_tokens} tokens each")
        fig.legend(loc="upper left")
        fig.tight_layout()
        return fig

    temporary = folder / f".tuning.{os.getpid()}.png"
    if not save_png(figure, temporary):
        return json_path, None
    os.replace(temporary, png_path)
    return json_path, png_path
