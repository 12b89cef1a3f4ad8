"""`tuneship export`, and the export options `tuneship deploy publish` shares with it. The flags are made from the
tasks' export options classes (exporter/options.py and each task's options.py); a checkpoint's task decides which
of them apply."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tuneship.exporter.image.options import ImageExportOptions
from tuneship.exporter.instruct.options import InstructExportOptions
from tuneship.exporter.options import DEFAULT_KEEP as DEFAULT_KEEP
from tuneship.exporter.options import ClassifierExportOptions, ExportOptions
from tuneship.exporter.text.options import TextExportOptions
from tuneship.options import add_options, field_names, given_fields, options_from_args
from tuneship.repository import LAYOUT_ALIASES

# Every task's export options: `tuneship export` takes the union, the checkpoint's task keeps its own.
TASK_OPTIONS: tuple[type[Any], ...] = (TextExportOptions, ImageExportOptions, InstructExportOptions)


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """Every export option, grouped by the checkpoints they apply to; `tuneship export` and `tuneship deploy
    publish` take the same ones."""
    add_options(parser, ExportOptions)
    add_options(parser.add_argument_group("classifiers (text and image)"), ClassifierExportOptions)
    add_options(parser.add_argument_group("text classifiers"), TextExportOptions)
    add_options(parser.add_argument_group("instruct checkpoints"), InstructExportOptions)


def export_options_from_args(args: argparse.Namespace) -> Any:
    """The export options of the checkpoint's task from the flags add_export_arguments declared; a flag another
    task's export takes is refused, naming it, rather than silently ignored."""
    from tuneship.exporter.errors import ExportError
    from tuneship.exporter.export import checkpoint_task
    from tuneship.exporter.tasks import task_export_options

    task = checkpoint_task(args.checkpoint)
    options_class = task_export_options(task)
    own = field_names(options_class)
    foreign = {name: flag for name, flag in given_fields(args, *TASK_OPTIONS).items() if name not in own}
    if foreign:
        owners = {name: [c.__name__.removesuffix("ExportOptions").lower() for c in TASK_OPTIONS
                         if name in field_names(c)] for name in foreign}
        raise ExportError(f"{args.checkpoint} (task {task}): "
                          + "; ".join(f"{flag} is for {' and '.join(owners[name])} checkpoints"
                                      for name, flag in sorted(foreign.items(), key=lambda kv: kv[1]))
                          + " (leave it out)")
    if getattr(args, "layout", None) in LAYOUT_ALIASES:
        print(f"note: --layout {args.layout} is now --layout {LAYOUT_ALIASES[args.layout]} (\"fused\" also names "
              "ONNX Runtime's operator fusion); publishing the same single-model layout", file=sys.stderr)
    return options_from_args(options_class, args)


def register(subparsers: Any) -> None:
    export = subparsers.add_parser("export", help="export a checkpoint to ONNX inside a Triton model repository")
    add_export_arguments(export)
    export.set_defaults(handler=run_export)

    adapters = subparsers.add_parser("adapters", help="list a generator's published LoRA adapters, or remove one")
    adapters.add_argument("model", help="the generator's name in the repository")
    adapters.add_argument("--repository", type=Path, default=Path("model_repository"),
                          help="Triton model repository")
    adapters.add_argument("--remove", default=None, metavar="NAME",
                          help="unpublish this adapter (the generator refuses it from its next look, ~2 s)")
    adapters.set_defaults(handler=run_adapters)


def run_adapters(args: argparse.Namespace) -> int:
    import json

    from tuneship.exporter.errors import ExportError
    from tuneship.exporter.instruct.adapter_export import remove_adapter
    from tuneship.serving import INFO_FILE, published

    model_dir = args.repository / args.model
    if not (model_dir / "config.pbtxt").is_file():
        raise ExportError(f"{model_dir}: no model {args.model!r} in {args.repository}")
    if args.remove:
        remove_adapter(args.repository, args.model, args.remove)
        print(f"removed adapter {args.remove} of {args.model}")
        return 0
    found = published(str(model_dir))
    if not found:
        print(f"{args.model}: no adapters (publish one with tuneship export CHECKPOINT --adapter-of {args.model} "
              "--name NAME)")
    for name, (_, folder) in found.items():
        info = json.loads((Path(folder) / INFO_FILE).read_text(encoding="utf-8"))
        print(f"{name:<24} exported {info.get('exported_at', '?')}  from {info.get('checkpoint', '?')}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from tuneship.exporter.export import export_checkpoint

    export_checkpoint(export_options_from_args(args))
    return 0
