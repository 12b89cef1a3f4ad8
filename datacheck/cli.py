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
    from tuneship.datacheck.check import check_and_report
    from tuneship.datacheck.options import DATA_OPTIONS, CheckOptions
    from tuneship.trainer.config import train_values

    options = options_from_args(CheckOptions, args, training=train_values(args, DATA_OPTIONS))
    check_and_report(options)
    return 0
