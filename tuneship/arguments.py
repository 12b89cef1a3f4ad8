"""Argument types and the help format shared by every subcommand.

A value a user typed is checked where it is parsed, so a wrong one ends in argparse's one-line
`error: argument --x: ...` (exit status 2), never in a traceback from deep inside a library.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuneship.urls import grpc_target, metrics_url

# argparse's "not given" marker, typed as Any so it may stand in for the default of any argument.
NOT_GIVEN: Any = argparse.SUPPRESS


class CommandError(Exception):
    """A command cannot go on because of what the user gave it; printed as one line, exit status 2."""


class HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default, except where there is none to show or the help already names it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if ("default" in text or "%(default)" in text or default is None or default is False
                or default == argparse.SUPPRESS or default == [] or action.nargs == 0
                or isinstance(action, argparse._VersionAction)):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """Every (sub)parser shows defaults; add_subparsers passes the class on to nested commands."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def _number(kind: Callable[[str], Any], test: Callable[[Any], bool], wanted: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {wanted}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {wanted}")
        return value

    parse.__name__ = wanted  # argparse names the type in some messages
    return parse


positive_int = _number(int, lambda v: v > 0, "a positive integer")
non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: v > 0 and v != float("inf"), "a positive number")
non_negative_float = _number(float, lambda v: v >= 0 and v != float("inf"), "a number >= 0")
port_number = _number(int, lambda v: 0 <= v <= 65535, "a port number (0-65535; 0 picks a free port)")


def existing_file(text: str) -> str:
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: not a file")
    return text


def existing_path(text: str) -> Path:
    return Path(existing_file(text))


def grpc_url(text: str) -> str:
    """HOST:PORT for gRPC; a scheme (grpc://, http://) is accepted and dropped."""
    try:
        return grpc_target(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def metrics_endpoint(text: str) -> str:
    """The full metrics URL; HOST:PORT and http://HOST:PORT gain the /metrics path."""
    try:
        return metrics_url(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def name_list(text: str) -> list[str]:
    """Comma-separated names (the option may also be repeated)."""
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated names, e.g. a,b")
    return names


def int_list(text: str) -> tuple[int, ...]:
    """Comma-separated integers >= 0, e.g. 0,2000,8000."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers, e.g. 1,2") from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: values must be >= 0")
    return values


def flatten(groups: list[list[str]] | None) -> list[str]:
    """Names from a repeatable, comma-separated option, in order, without repeats."""
    seen: dict[str, None] = {}
    for group in groups or []:
        for name in group:
            seen.setdefault(name)
    return list(seen)
