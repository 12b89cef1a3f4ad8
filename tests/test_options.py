"""Options declared once: commands' flags are made from their options dataclasses (tuneship.options)."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tuneship.arguments import Parser, positive_int
from tuneship.options import add_options, options_from_args


@dataclass
class _Sample:
    name: str = field(metadata={"help": "required: no default"})
    count: int = field(default=2, metadata={"help": "how many", "type": positive_int})
    share: float = field(default=0.25, metadata={"help": "percent", "cli_scale": 100})
    tags: tuple[str, ...] = field(default=(), metadata={"help": "repeatable", "flag": "--tag", "action": "append",
                                                        "type": str})
    keep: bool = field(default=True, metadata={"help": "keep it", "aliases": ("--retain",)})
    handled: str = field(default="x", metadata={"help": "the command's own", "flag": None})


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog="sample")
    add_options(parser, _Sample)
    return parser


def test_flags_come_from_the_fields_with_their_types_units_and_old_names() -> None:
    parser = _parser()
    parsed = parser.parse_args(["--name", "n", "--count", "3", "--share", "40", "--tag", "a", "--tag", "b",
                                "--no-retain"])
    assert options_from_args(_Sample, parsed, handled="y") == _Sample("n", 3, 0.40, ("a", "b"), False, "y")
    assert options_from_args(_Sample, parser.parse_args(["--name", "n"])) == _Sample("n")
    assert "--handled" not in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["--count", "0", "--name", "n"])  # the field's type checks the value
    with pytest.raises(SystemExit):
        parser.parse_args([])  # a field without a default is a required flag


def test_the_serve_command_is_made_from_serve_options() -> None:
    from tuneship.deploy.cli import register
    from tuneship.deploy.options import ServeOptions

    parser = Parser(prog="tuneship")
    register(parser.add_subparsers())
    serve = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["serve"]
    helps = {a.dest: a.help for a in serve._actions}
    for spec in dataclasses.fields(ServeOptions):
        if spec.metadata.get("flag", "") is not None:
            assert helps[spec.name] == spec.metadata["help"], spec.name
    assert options_from_args(ServeOptions, serve.parse_args([])) == ServeOptions()  # the defaults are the fields'
    args = serve.parse_args(["--model-repository", "r", "--grpc-port", "0", "--model-control-mode", "explicit",
                             "--load-model", "a", "--load-model", "b", "--ready-timeout", "5", "--no-heal"])
    assert options_from_args(ServeOptions, args) == ServeOptions(
        model_repository=Path("r"), grpc_port=0, model_control_mode="explicit", load_models=("a", "b"),
        ready_timeout_s=5.0, heal=False)
