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


def _export_parser() -> argparse.ArgumentParser:
    from tuneship.exporter import add_export_arguments

    parser = Parser(prog="export")
    add_export_arguments(parser)
    return parser


def test_the_export_command_is_made_from_every_tasks_export_options(monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneship.exporter import ServingOptions, TextExportOptions, export_options_from_args

    monkeypatch.setattr("tuneship.exporter.export.checkpoint_task", lambda path: "text-classification")
    flags = ["ckpt", "--keep-padding", "--no-optimize", "--speed-margin", "7", "--instances", "2",
             "--preferred-batch-size", "8", "--preferred-batch-size", "16", "--int8-mode", "both",
             "--lock-timeout", "5", "--versions", "2"]
    options = export_options_from_args(_export_parser().parse_args(flags))
    assert type(options) is TextExportOptions
    assert (options.remove_padding, options.optimize, options.speed_margin, options.int8_modes,
            options.lock_timeout_s) == (False, False, 0.07, ("dynamic", "static"), 5.0)
    assert options.serving == ServingOptions(instance_count=2, preferred_batch_sizes=(8, 16), versions_to_serve=2)
    # With no flags, every field is its dataclass default (the help and the dataclass cannot disagree).
    assert export_options_from_args(_export_parser().parse_args(["ckpt"])) == TextExportOptions(checkpoint=Path("ckpt"))


def test_an_export_flag_of_another_task_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneship.exporter import ExportError, InstructExportOptions, export_options_from_args

    monkeypatch.setattr("tuneship.exporter.export.checkpoint_task", lambda path: "instruct")
    parser = _export_parser()
    with pytest.raises(ExportError, match=r"ckpt \(task instruct\): --int8-mode is for text checkpoints; "
                                          r"--per-channel is for text and image checkpoints"):
        export_options_from_args(parser.parse_args(["ckpt", "--int8-mode", "static", "--no-per-channel"]))
    options = export_options_from_args(parser.parse_args(["ckpt", "--max-concurrency", "2", "--versions", "3"]))
    assert type(options) is InstructExportOptions
    assert (options.generation.max_concurrency, options.generation.versions_to_serve) == (2, 3)


def test_common_export_options_become_the_tasks_own_and_another_tasks_are_refused() -> None:
    from tuneship.exporter import ExportError, ExportOptions, ImageExportOptions, TextExportOptions
    from tuneship.exporter.run import as_task_options

    common = ExportOptions(checkpoint=Path("ckpt"), name="faces", precision="int8", keep=1)
    image = as_task_options(common, ImageExportOptions, "image-classification")
    assert image == ImageExportOptions(checkpoint=Path("ckpt"), name="faces", precision="int8", keep=1)
    assert as_task_options(image, ImageExportOptions, "image-classification") is image
    with pytest.raises(ExportError, match="a text-classification checkpoint is exported with TextExportOptions, "
                                          "not ImageExportOptions"):
        as_task_options(image, TextExportOptions, "text-classification")


def _subcommand(name: str) -> argparse.ArgumentParser:
    from tuneship.cli import build_parser

    parser = build_parser()
    found: argparse.ArgumentParser = next(
        a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return found


@pytest.mark.parametrize(("command", "options"), [
    ("update", "tuneship.monitor.options:UpdateOptions"), ("bench", "tuneship.client.bench_options:BenchOptions"),
    ("export", "tuneship.exporter.text.options:TextExportOptions"),
    ("export", "tuneship.exporter.instruct.options:InstructExportOptions")])
def test_every_field_is_a_flag_with_the_fields_help(command: str, options: str) -> None:
    from tuneship.lazy import load

    parser = _subcommand(command)
    helps: dict[str, object] = {}
    for action in parser._actions:
        helps.setdefault(action.dest, action.help)  # a flag's hidden old negative name comes after it
    declared = load(options)

    def check(cls: type) -> None:
        for spec in dataclasses.fields(cls):
            if dataclasses.is_dataclass(spec.default_factory) if spec.default_factory is not dataclasses.MISSING \
                    else False:
                check(spec.default_factory)  # type: ignore[arg-type]
            elif spec.metadata.get("flag", "") is not None:
                assert helps[spec.name] == spec.metadata["help"], f"{command} {spec.name}"
    check(declared)


def test_the_update_and_bench_commands_fill_their_options() -> None:
    from tuneship.client.bench_options import BenchOptions
    from tuneship.monitor.options import UpdateOptions

    update = _subcommand("update").parse_args(["README.md", "--model", "m", "--output", "out", "--margin", "2",
                                              "--no-publish", "--min-shadow-agreement", "0.5"])
    assert options_from_args(UpdateOptions, update) == UpdateOptions(
        name="m", new_data=Path("README.md"), output=Path("out"), margin_points=2.0, publish=False,
        min_shadow_agreement=0.5)
    bench = _subcommand("bench").parse_args(["--concurrency", "1,4", "--window", "0.5", "--wait", "3"])
    assert options_from_args(BenchOptions, bench) == BenchOptions(concurrency=(1, 4), window_s=0.5, wait_s=3.0)
    assert options_from_args(BenchOptions, _subcommand("bench").parse_args([])) == BenchOptions()
    with pytest.raises(SystemExit):
        _subcommand("bench").parse_args(["--concurrency", "0"])
