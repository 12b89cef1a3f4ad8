"""A generator's LoRA adapters, published in folders beside its versions (the serving engine reads the same
folders where tuneship is not installed; a test holds its spelling equal to `files`)."""

from __future__ import annotations

import re
from pathlib import Path

from tuneship.repository.files import ADAPTER_INFO, ADAPTERS_DIR

ADAPTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""What an adapter may be called (it becomes a folder name and part of a model id, `MODEL:ADAPTER`)."""


def published_adapters(repository: Path, model: str) -> dict[str, int]:
    """Adapters published beside a generator: name -> when (adapter.json is written last, so a half-published
    adapter is not listed)."""
    root = repository / model / ADAPTERS_DIR
    found: dict[str, int] = {}
    try:
        folders = sorted(root.iterdir())
    except OSError:
        return found
    for folder in folders:
        try:
            found[folder.name] = int((folder / ADAPTER_INFO).stat().st_mtime)
        except OSError:
            continue
    return {name: when for name, when in found.items() if ADAPTER_NAME.match(name)}
