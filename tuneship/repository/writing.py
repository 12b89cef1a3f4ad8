"""Writing into a repository safely: model names that are safe folder names, and files written whole (aside,
then renamed) so that a server polling the repository never reads half of one."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from tuneship.repository.errors import RepositoryError

_LEGAL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def check_model_name(name: str) -> str:
    """Triton model names become directory names: no separators, no dot-dot, no surprises."""
    if not _LEGAL_NAME.match(name) or ".." in name:
        raise RepositoryError(
            f"invalid model name {name!r}: use letters, digits, '_', '-' and '.', start with a letter, digit "
            "or '_', at most 128 characters, and no path separators or '..'"
        )
    return name


def write_text_atomic(path: Path, text: str) -> None:
    """Write a whole file or nothing: readers (a polling Triton) never see half of it.

    mkstemp creates the file 0600; published files must be readable by a server running as another user.
    """
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
