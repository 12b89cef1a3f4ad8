"""`tuneship tune`: the fastest serving configuration within a latency budget (tuneship.tuning)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tuneship.arguments import CommandError, existing_path, int_list, non_negative_float, positive_float, positive_int


def register(subparsers: Any) -> None:
    tune = subparsers.add_parser(
        "tune", help="sweep batching, instances, threads and kept precision variants on the embedded server; "
                     "keep the fastest config within a latency budget")
    tune.add_argument("--model", required=True,
                      help="the classifier to tune (a text or image ensemble, or a fused text classifier)")
    tune.add_argument("--latency-budget-ms", type=positive_float, required=True,
                      help="largest allowed latency percentile (ms)")
    tune.add_argument("--model-repository", type=Path, default=Path("model_repository"),
                      help="Triton model repository")
    tune.add_argument("--percentile", type=int, choices=(50, 90, 95, 99), default=99,
                      help="the latency percentile the budget bounds")
    tune.add_argument("--concurrency", type=positive_int, default=8, help="requests in flight while measuring")
    tune.add_argument("--batch-size", type=positive_int, default=1, help="texts per request")
    tune.add_argument("--window", type=positive_float, default=2.0, help="seconds per measurement window (up to 3)")
    tune.add_argument("--max-batch-sizes", type=int_list, default=(16, 64), help="max_batch_size values to try")
    tune.add_argument("--queue-delays-us", type=int_list, default=(0, 2000, 8000),
                      help="dynamic batcher queue delays to try (microseconds)")
    tune.add_argument("--instance-counts", type=int_list, default=(1, 2), help="model instance counts to try")
    tune.add_argument("--intra-op-threads", type=int_list, default=(0, 1),
                      help="ONNX Runtime intra-op thread counts to try (0: all cores)")
    tune.add_argument("--texts", type=existing_path, default=None,
                      help="file of texts to send, one per line (default: the bundled reviews)")
    tune.add_argument("--images", default=None,
                      help="an image classifier: folder of images to send (each request row one image)")
    tune.add_argument("--variants", action=argparse.BooleanOptionalAction, default=True,
                      help="also sweep the precision variants the export kept (tuneship export --keep-variants)")
    tune.add_argument("--compare-fused", action=argparse.BooleanOptionalAction, default=True,
                      help="a text ensemble: also measure the same graph and settings as one fused model "
                           "(tuneship export --layout fused) and say how it compares; nothing is switched")
    tune.add_argument("--invariance-margin", type=non_negative_float, default=10.0,
                      help="percent: a batch-invariant variant is taken over a faster one that is not, up to "
                           "this much slower")
    tune.add_argument("--dry-run", action="store_true", help="measure and print the table; write nothing (no "
                      "configuration, report or chart)")
    tune.set_defaults(handler=run_tune)


def run_tune(args: argparse.Namespace) -> int:
    from tuneship.tuning import TuneError, TuneOptions, fused_advice, header, row, save, tune

    for name in ("max_batch_sizes", "instance_counts"):
        if 0 in getattr(args, name):
            raise CommandError(f"--{name.replace('_', '-')}: values must be at least 1")
    texts: list[Any] = []
    if args.texts is not None:
        texts = [line.strip() for line in args.texts.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not texts:
            raise CommandError(f"{args.texts}: no texts in the file")
    if args.images is not None:
        from tuneship.client.errors import InvalidInputError
        from tuneship.client.images import read_image_folder

        try:
            texts = list(read_image_folder(args.images))
        except InvalidInputError as error:
            raise CommandError(f"--images: {error}") from None
    options = TuneOptions(model=args.model, latency_budget_ms=args.latency_budget_ms,
                          repository=args.model_repository, percentile=args.percentile, concurrency=args.concurrency,
                          batch_size=args.batch_size, window_s=args.window, max_batch_sizes=args.max_batch_sizes,
                          queue_delays_us=args.queue_delays_us, instance_counts=args.instance_counts,
                          intra_op_threads=args.intra_op_threads, texts=texts, write=not args.dry_run,
                          variants=args.variants, invariance_margin=args.invariance_margin / 100.0,
                          compare_fused=args.compare_fused)
    try:
        report = tune(options)
    except TuneError as error:
        raise CommandError(str(error)) from None
    print("\n" + header())
    for trial in sorted(report.trials, key=lambda t: -t.texts_per_second):
        print(row(trial, report.percentile, report.latency_budget_ms, chosen=trial is report.chosen))
    print(f"\n{report.reason}")
    if fused_advice(report):
        print(fused_advice(report))
    if args.dry_run:  # nothing at all: no config, no report, no chart
        print("--dry-run: nothing written (no configuration, report or chart)")
        return 0 if report.chosen is not None else 1
    json_path, png_path = save(report, args.model_repository)
    if report.written:
        print("wrote " + ", ".join(report.written) + " (a polling server reloads them; otherwise restart or "
              f"`tuneship deploy load {args.model}`)")
    print(f"report: {json_path}  frontier: {png_path}")
    return 0 if report.chosen is not None else 1
