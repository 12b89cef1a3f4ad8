"""`tuneship search`: train, publish and serve many configurations; keep the front of quality against latency."""

from __future__ import annotations

import argparse
from typing import Any

from tuneship.arguments import CommandError
from tuneship.options import add_options, options_from_args


def register(subparsers: Any) -> None:
    from tuneship.search.options import DATA_OPTIONS, SearchOptions
    from tuneship.trainer.config import train_flags

    search = subparsers.add_parser(
        "search", help="search base models, methods, hyperparameters and export precision; score each trial on "
                       "quality and on served latency; keep the front")
    add_options(search, SearchOptions)
    train_flags(search.add_argument_group("data and task (as tuneship train takes them)"), DATA_OPTIONS)
    search.set_defaults(handler=run_search)


def run_search(args: argparse.Namespace) -> int:
    from tuneship.search.options import DATA_OPTIONS, SearchError, SearchOptions
    from tuneship.search.publish import pick, publish, rows_from
    from tuneship.search.study import search
    from tuneship.trainer.config import train_values

    options: SearchOptions = options_from_args(SearchOptions, args, training=train_values(args, DATA_OPTIONS))
    try:
        if options.publish_from is not None:
            row = pick(options, rows_from(options, options.publish_from))
            print(publish(options, row).describe())
            return 0
        report = search(options)
        if options.publish:
            print(publish(options, pick(options, report.rows)).describe())
    except SearchError as error:
        raise CommandError(str(error)) from None
    # No trial inside the constraints (the closest were printed) is the user's to change: exit 2, as bad input.
    return 0 if report.front else 2
