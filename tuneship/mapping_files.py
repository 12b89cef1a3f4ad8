"""YAML or TOML files that hold one mapping (a training recipe, a search space): read by suffix, with the parser's
own message (it names the line) when the file cannot be read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomllib


class MappingFileError(ValueError):
    """The file is missing, does not parse, or is not a mapping; the message says which and where."""


def read_mapping(path: Path, what: str) -> dict[str, Any]:
    """`path`'s mapping (TOML for .toml, YAML otherwise); `what` names the file in messages ("recipe")."""
    if not path.is_file():
        raise MappingFileError(f"{path}: {what} file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            raw: Any = tomllib.loads(text)
        else:
            import yaml

            raw = yaml.safe_load(text) or {}
    except Exception as error:  # the parsers' own messages carry line numbers
        raise MappingFileError(f"{path}: cannot parse the {what}: {str(error).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise MappingFileError(f"{path}: a {what} must be a mapping of names to values")
    return raw
