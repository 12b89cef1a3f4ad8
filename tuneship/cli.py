"""The `tuneship` command: a tiny dispatcher; each stage's package owns its subcommands."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import tuneship
from tuneship.arguments import Parser
from tuneship.quiet import quiet_known_warnings

# Stage CLI modules must be cheap to import: heavy libraries are imported inside handlers.
STAGE_CLIS = ("tuneship.datacheck.cli", "tuneship.trainer.cli", "tuneship.search.cli", "tuneship.exporter.cli",
              "tuneship.deploy.cli", "tuneship.tuning.cli", "tuneship.client.cli", "tuneship.monitor.cli",
              "tuneship.api.cli")


def build_parser() -> Parser:
    parser = Parser(
        prog="tuneship", description="Fine-tune, export, serve and monitor models on Triton Inference Server.")
    parser.add_argument("--version", action="version", version=f"tuneship {tuneship.__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in STAGE_CLIS:
        importlib.import_module(module_name).register(subparsers)
    return parser


def _ours(error: BaseException) -> bool:
    """Our own errors carry a message meant for the user; anything else is a bug (shown with its traceback)."""
    return type(error).__module__.startswith("tuneship.")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_known_warnings()
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if _ours(error):
            print(f"error: {error}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
