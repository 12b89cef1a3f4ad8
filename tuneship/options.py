"""Options declared once: a stage's options dataclass gives its command-line flags (name, type, default, help).

Each field's metadata carries its `help`, and where the command line differs from the field: `flag` (the flag's
name; None: not a flag, the command handles it), `type` (an argument type from tuneship.arguments), `choices`,
`action` ("append": a repeatable flag filling a tuple), `cli_scale` (the flag takes the value times this: a
percentage for a share) and `aliases` (a renamed flag's old names, which keep working). `--help`, the dataclass
and the saved reports then cannot drift apart (PyTriton's TritonConfig and transformers' TrainingArguments do the
same). A bool field that defaults to True becomes `--name/--no-name`; one that defaults to False, `--name`.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from tuneship.arguments import int_list


def _default(spec: dataclasses.Field[Any]) -> Any:
    if spec.default is not dataclasses.MISSING:
        return spec.default
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return dataclasses.MISSING


def _type(spec: dataclasses.Field[Any], default: Any) -> Any:
    if "type" in spec.metadata:
        return spec.metadata["type"]
    kind = str(spec.type)
    if kind.startswith("tuple[int"):
        return int_list
    return {"int": int, "float": float, "Path": Path, "str": str}.get(kind, type(default) if default not in (
        None, dataclasses.MISSING) else str)


def add_options(parser: argparse.ArgumentParser, options: type[Any]) -> None:
    """One flag per field of the dataclass `options` (fields with `flag: None` are left to the command)."""
    for spec in dataclasses.fields(options):
        flag = spec.metadata.get("flag", "--" + spec.name.replace("_", "-"))
        if flag is None:
            continue
        default = _default(spec)
        help_text = str(spec.metadata.get("help", ""))
        flags = (flag, *spec.metadata.get("aliases", ()))  # old names keep working
        if str(spec.type) == "bool":
            action = argparse.BooleanOptionalAction if default else "store_true"
            parser.add_argument(*flags, dest=spec.name, action=action, default=bool(default), help=help_text)
            continue
        kwargs: dict[str, Any] = {"dest": spec.name, "help": help_text, "type": _type(spec, default),
                                  "metavar": flag.lstrip("-").upper().replace("-", "_")}
        if spec.metadata.get("action") == "append":  # a repeatable flag; the field holds a tuple
            kwargs["action"] = "append"
            kwargs["default"] = []
            parser.add_argument(*flags, **kwargs)
            continue
        if "choices" in spec.metadata:
            kwargs["choices"] = spec.metadata["choices"]
            del kwargs["metavar"]  # argparse shows the choices
        if default is dataclasses.MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = default * spec.metadata.get("cli_scale", 1) if "cli_scale" in spec.metadata \
                else default
        parser.add_argument(*flags, **kwargs)


def options_from_args(options: type[Any], args: argparse.Namespace, **given: Any) -> Any:
    """The dataclass from parsed flags (`given` supplies the fields the command handles itself)."""
    values: dict[str, Any] = dict(given)
    for spec in dataclasses.fields(options):
        if spec.name in values or spec.metadata.get("flag", "") is None or not hasattr(args, spec.name):
            continue
        value = getattr(args, spec.name)
        if isinstance(value, list):
            value = tuple(value)
        values[spec.name] = value / spec.metadata["cli_scale"] if "cli_scale" in spec.metadata else value
    return options(**values)
