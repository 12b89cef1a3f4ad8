"""`tuneship tune`: the fastest serving configuration within a latency budget (tuneship.tuning)."""

from __future__ import annotations

import argparse
from typing import Any

from tuneship.arguments import CommandError, existing_path
from tuneship.options import add_options, options_from_args
from tuneship.tuning.options import TuneOptions


def register(subparsers: Any) -> None:
    tune = subparsers.add_parser(
        "tune", help="sweep batching, instances, threads and kept precision variants on the embedded server; "
                     "keep the fastest config within a latency budget")
    add_options(tune, TuneOptions)  # every flag but the items and --dry-run comes from TuneOptions' fields
    tune.add_argument("--texts", type=existing_path, default=None,
                      help="file of texts to send, one per line (default: the bundled reviews)")
    tune.add_argument("--images", default=None,
                      help="an image classifier: folder of images to send (each request row one image)")
    tune.add_argument("--dry-run", action="store_true", help="measure and print the table; write nothing (no "
                      "configuration, report or chart)")
    tune.set_defaults(handler=run_tune)


def run_tune(args: argparse.Namespace) -> int:
    from tuneship.tuning import TuneError, header, row, save, single_model_advice, tune

    for name in ("max_batch_sizes", "instance_counts"):
        if 0 in getattr(args, name):
            raise CommandError(f"--{name.replace('_', '-')}: values must be at least 1")
    texts: list[Any] = []
    if args.texts is not None:
        texts = [line.strip() for line in args.texts.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not texts:
            raise CommandError(f"{args.texts}: no texts in the file")
    if args.images is not None:
        from tuneship.client import InvalidInputError, read_image_folder

        try:
            texts = list(read_image_folder(args.images))
        except InvalidInputError as error:
            raise CommandError(f"--images: {error}") from None
    options = options_from_args(TuneOptions, args, texts=texts, write=not args.dry_run)
    from tuneship.tuning.generator import is_generator

    if is_generator(options.repository, options.model):
        return _tune_generator(options, args.dry_run)
    try:
        report = tune(options)
    except TuneError as error:
        raise CommandError(str(error)) from None
    print("\n" + header())
    for trial in sorted(report.trials, key=lambda t: -t.texts_per_second):
        print(row(trial, report.percentile, report.latency_budget_ms, chosen=trial is report.chosen))
    print(f"\n{report.reason}")
    if single_model_advice(report):
        print(single_model_advice(report))
    if args.dry_run:  # nothing at all: no config, no report, no chart
        print("--dry-run: nothing written (no configuration, report or chart)")
        return 0 if report.chosen is not None else 1
    json_path, png_path = save(report, args.repository)
    if report.written:
        print("wrote " + ", ".join(report.written) + " (a polling server reloads them; otherwise restart or "
              f"`tuneship deploy load {args.model}`)")
    print(f"report: {json_path}  frontier: {png_path}")
    return 0 if report.chosen is not None else 1


def _tune_generator(options: TuneOptions, dry_run: bool) -> int:
    from tuneship.tuning import TuneError
    from tuneship.tuning.generator import row, save_generator_report, tune_generator

    try:
        report = tune_generator(options)
    except TuneError as error:
        raise CommandError(str(error)) from None
    print()
    for trial in sorted(report.trials, key=lambda t: -t.tokens_per_second):
        print(row(trial, chosen=trial is report.chosen))
    print(f"\n{report.reason}")
    if dry_run:
        print("--dry-run: nothing written (no configuration, report or chart)")
        return 0 if report.chosen is not None else 1
    json_path, png_path = save_generator_report(report, options.repository)
    if report.written:
        print("wrote " + ", ".join(report.written) + " (a polling server reloads it; otherwise restart or "
              f"`tuneship deploy load {options.model}`)")
    print(f"report: {json_path}" + (f"  chart: {png_path}" if png_path else ""))
    return 0 if report.chosen is not None else 1
