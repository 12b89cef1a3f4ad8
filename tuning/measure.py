"""Measuring: the scratch repository on its own embedded Triton, every candidate loaded and measured in turn."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tuneship.tuning.apply import apply, install_variant, single_model_copy, write_back, write_configs
from tuneship.tuning.options import PERCENTILES, REPORTS, TuneError, TuneOptions
from tuneship.tuning.report import TuneReport, header, row
from tuneship.tuning.search import (
    Candidate,
    KeptVariant,
    Trial,
    candidates,
    choose,
    current_candidate,
    graph_step,
    kept_variants,
    pipeline_models,
)


def measure(url: str, options: TuneOptions, texts: Sequence[str], trial: Trial, model: str = "") -> None:
    from tuneship.client import run_bench

    [result] = asyncio.run(run_bench(url, model or options.model, [options.concurrency], texts, options.batch_size,
                                     options.window_s, max_windows=3, progress=False))
    trial.texts_per_second = round(result.texts_per_second, 1)
    trial.latency_ms = {f"p{p}": round(getattr(result, f"p{p}_ms"), 2) for p in PERCENTILES}
    trial.errors = result.errors


def tune(options: TuneOptions) -> TuneReport:
    from tuneship.client import TritonClient, builtin_reviews
    from tuneship.deploy import ServeOptions, TritonServer

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
                    install_variant(scratch, onnx_step, kept.path)
                write_configs(scratch, apply(trial.candidate, ensemble, steps, kept.graph_level if kept else None))
                try:
                    for config in [*steps, ensemble]:
                        client.load_model(config.name)
                    measure(server.grpc_url, options, texts, trial)
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
            single_trial: Trial | None = None
            if options.compare_single_model and ensemble.platform == "ensemble" and served is not None \
                    and "single" in served.layouts \
                    and onnx_step.platform == "onnxruntime_onnx":
                best = chosen.candidate if chosen is not None else current
                kept_best = next((k for k in others if k.name == best.variant), None)
                single_trial = Trial(best, current=False)
                try:
                    name = single_model_copy(options, scratch, best, kept_best)
                    client.load_model(name)
                    measure(server.grpc_url, options, texts, single_trial, name)
                except Exception as error:  # advice only: a failure is reported, not raised
                    single_trial.note = f"failed: {str(error).splitlines()[0][:120]}"
                print(row(single_trial, options.percentile, options.latency_budget_ms, label="single-model layout"),
                      flush=True)
    written: list[str] = []
    if chosen is not None and options.write:
        kept_chosen = next((k for k in others if k.name == chosen.candidate.variant), None)
        written = write_back(options, ensemble, steps, onnx_step, chosen.candidate, kept_chosen)
    return TuneReport(model=options.model, percentile=options.percentile,
                      latency_budget_ms=options.latency_budget_ms, concurrency=options.concurrency, trials=trials,
                      chosen=chosen, written=written, reason=reason, published_variant=published,
                      single_model_layout=single_trial)
