"""Options declared once: a stage's options dataclass gives its command-line flags (name, type, default, help).

Each field's metadata carries its `help`, and where the command line differs from the field: `flag` (the flag's
name; None: not a flag, the command handles it), `type` (an argument type from tuneship.arguments), `choices`,
`action` ("append": a repeatable flag filling a tuple), `cli_scale` (the flag takes the value times this: a
percentage for a share) and `aliases` (a renamed flag's old names, which keep working). `--help`, the dataclass
and the saved reports then cannot drift apart (PyTriton's TritonConfig and transformers' TrainingArguments do the
same). A bool field that defaults to True becomes `--name/--no-name`; one that defaults to False, `--name`.
`positional` makes the field a positional argument, `negative_aliases` names old flags that set a bool False
(`--keep-padding` for `remove_padding`), and a field holding a dataclass (the serving options inside an export's)
adds that dataclass's flags. Several classes can share one parser (a command whose options depend on the task it
meets): a flag they share is declared once, and `given_fields` tells which fields a command line set.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Collection
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


def _nested(spec: dataclasses.Field[Any]) -> type[Any] | None:
    """The dataclass a field holds (its flags are the field's), if it holds one."""
    default = _default(spec)
    return type(default) if dataclasses.is_dataclass(default) and not isinstance(default, type) else None


def _flag(spec: dataclasses.Field[Any]) -> str | None:
    flag: str | None = spec.metadata.get("flag", "--" + spec.name.replace("_", "-"))
    return flag


def add_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *classes: type[Any],
                skip: Collection[str] = ()) -> None:
    """One flag per field of the dataclasses `classes` (fields with `flag: None` are left to the command, and so
    are the fields named in `skip`: another command embedding these options decides them)."""
    seen = {action.dest for action in parser._actions} | set(skip)
    for options in classes:
        for spec in dataclasses.fields(options):
            nested = _nested(spec)
            if nested is not None:
                add_options(parser, nested)
                seen = {action.dest for action in parser._actions}
                continue
            flag = _flag(spec)
            if flag is None or spec.name in seen:
                continue
            seen.add(spec.name)
            _add(parser, spec, flag)


def _add(parser: argparse.ArgumentParser | argparse._ArgumentGroup, spec: dataclasses.Field[Any], flag: str) -> None:
    default = _default(spec)
    help_text = str(spec.metadata.get("help", ""))
    if spec.metadata.get("positional"):
        parser.add_argument(spec.name, type=_type(spec, default), help=help_text)
        return
    flags = (flag, *spec.metadata.get("aliases", ()))  # old names keep working
    if str(spec.type) == "bool":
        action = argparse.BooleanOptionalAction if default else "store_true"
        parser.add_argument(*flags, dest=spec.name, action=action, default=bool(default), help=help_text)
        for negative in spec.metadata.get("negative_aliases", ()):
            parser.add_argument(negative, dest=spec.name, action="store_false", help=argparse.SUPPRESS)
        return
    kwargs: dict[str, Any] = {"dest": spec.name, "help": help_text, "type": _type(spec, default),
                              "metavar": spec.metadata.get("metavar", flag.lstrip("-").upper().replace("-", "_"))}
    if spec.metadata.get("action") == "append":  # a repeatable flag; the field holds a tuple
        kwargs["action"] = "append"
        kwargs["default"] = []
        parser.add_argument(*flags, **kwargs)
        return
    if "choices" in spec.metadata:
        kwargs["choices"] = spec.metadata["choices"]
        del kwargs["metavar"]  # argparse shows the choices
    if default is dataclasses.MISSING:
        kwargs["required"] = True
    else:
        kwargs["default"] = _cli_value(spec, default)
    parser.add_argument(*flags, **kwargs)


def _cli_value(spec: dataclasses.Field[Any], value: Any) -> Any:
    return value * spec.metadata["cli_scale"] if "cli_scale" in spec.metadata and value is not None else value


def _field_value(spec: dataclasses.Field[Any], value: Any) -> Any:
    if isinstance(value, list):
        value = tuple(value)
    return value / spec.metadata["cli_scale"] if "cli_scale" in spec.metadata and value is not None else value


def options_from_args(options: type[Any], args: argparse.Namespace, **given: Any) -> Any:
    """The dataclass from parsed flags (`given` supplies the fields the command handles itself)."""
    values: dict[str, Any] = dict(given)
    for spec in dataclasses.fields(options):
        if spec.name in values:
            continue
        nested = _nested(spec)
        if nested is not None:
            values[spec.name] = options_from_args(nested, args)
            continue
        if _flag(spec) is None or not hasattr(args, spec.name):
            continue
        values[spec.name] = _field_value(spec, getattr(args, spec.name))
    return options(**values)


def given_fields(args: argparse.Namespace, *classes: type[Any]) -> dict[str, str]:
    """The fields of `classes` a command line set to something other than their default, each with its flag
    (for "--int8-mode is not an option of this task" messages)."""
    found: dict[str, str] = {}
    for options in classes:
        for spec in dataclasses.fields(options):
            nested = _nested(spec)
            if nested is not None:
                found.update(given_fields(args, nested))
                continue
            flag = _flag(spec)
            if flag is None or spec.metadata.get("positional") or not hasattr(args, spec.name):
                continue
            default = _default(spec)
            if _field_value(spec, getattr(args, spec.name)) != default:
                found[spec.name] = flag
    return found


def field_names(options: type[Any]) -> set[str]:
    """Every field of `options` and of the dataclasses it holds."""
    names: set[str] = set()
    for spec in dataclasses.fields(options):
        nested = _nested(spec)
        names |= field_names(nested) if nested is not None else {spec.name}
    return names
