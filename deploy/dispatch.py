"""The `tuneship` command: a tiny dispatcher; each stage's package owns its subcommands."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Stage CLI modules must be cheap to import: heavy libraries are imported inside handlers.
STAGE_CLIS = ("trainer.cli", "exporter.cli", "deploy.cli", "client.cli")
OUR_PACKAGES = {"trainer", "exporter", "deploy", "client"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuneship", description="Fine-tune, export, serve and monitor models on Triton Inference Server."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in STAGE_CLIS:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        # Our own errors carry a message meant for the user; anything else is a bug: show the traceback.
        if type(error).__module__.split(".")[0] in OUR_PACKAGES:
            print(f"error: {error}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
