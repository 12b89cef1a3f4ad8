"""`tuneship data check`: wrong labels, duplicates, conflicts, leaks and outliers in a labelled file."""

from __future__ import annotations

import argparse
from typing import Any

from tuneship.options import add_options, options_from_args


def register(subparsers: Any) -> None:
    from tuneship.datacheck.options import DATA_OPTIONS, CheckOptions
    from tuneship.trainer.config import train_flags

    data = subparsers.add_parser("data", help="check labelled data before training")
    actions = data.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check", help="find probably wrong labels, duplicates, conflicts, train/eval leaks and outliers; "
                      "--fix writes a cleaned copy")
    add_options(check, CheckOptions)
    train_flags(check.add_argument_group("data (as tuneship train takes it)"), DATA_OPTIONS)
    check.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from tuneship.datacheck.check import check
    from tuneship.datacheck.fix import write_cleaned_copy
    from tuneship.datacheck.options import DATA_OPTIONS, CheckOptions
    from tuneship.datacheck.report import summary, write

    training = {name: getattr(args, name) for name in DATA_OPTIONS if hasattr(args, name)}
    options: CheckOptions = options_from_args(CheckOptions, args, training=training)
    report = check(options)
    if options.fix:
        cleaned = write_cleaned_copy(options, report)
        report.cleaned = [str(cleaned.path)]
        print(cleaned.describe())
    print(summary(report))
    written = write(options.output, report, {k: str(v) for k, v in asdict(options).items()})
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
