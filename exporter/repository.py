"""Publishing models into a Triton model repository: next version, built aside, renamed into place."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from tuneship.exporter.errors import ExportError
from tuneship.exporter.model_configs import to_pbtxt

_LEGAL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def check_model_name(name: str) -> str:
    """Triton model names become directory names: no separators, no dot-dot, no surprises."""
    if not _LEGAL_NAME.match(name) or ".." in name:
        raise ExportError(
            f"invalid model name {name!r}: use letters, digits, '_', '-' and '.', start with a letter, digit "
            "or '_', at most 128 characters, and no path separators or '..'"
        )
    return name


def existing_versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


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


def publish_version(repository: Path, config: mc.ModelConfig, fill: Callable[[Path], None],
                    keep: int | None = None) -> int:
    """Create `<repository>/<model>/<next version>/` atomically; return the version number.

    `fill` writes the version's files into a staging directory on the same file system; the
    finished directory is renamed into place, so a polling server never sees a half-written version.
    """
    model_dir = repository / check_model_name(config.name)
    model_dir.mkdir(parents=True, exist_ok=True)
    # Inside the model's folder, where Triton skips any subfolder that is not a version number: a publish killed
    # half-way leaves nothing a server would try to load (a stray folder at the top would stop Triton starting).
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=model_dir))
    os.chmod(staging, 0o755)  # mkdtemp makes it private; it becomes the published version
    try:
        fill(staging)
        version = (existing_versions(model_dir) or [0])[-1] + 1
        while True:
            try:
                os.rename(staging, model_dir / str(version))
                break
            except OSError:  # another publisher took this number first
                if not (model_dir / str(version)).exists():
                    raise
                version += 1
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    write_text_atomic(model_dir / "config.pbtxt", to_pbtxt(config))
    if keep is not None:
        prune_versions(model_dir, keep)
    return version


def prune_versions(model_dir: Path, keep: int) -> list[int]:
    """Delete all but the newest `keep` versions; returns the deleted version numbers."""
    if keep < 1:
        raise ExportError(f"--keep must be at least 1, got {keep}")
    versions = existing_versions(model_dir)
    removed = versions[:-keep]
    for version in removed:
        shutil.rmtree(model_dir / str(version), ignore_errors=True)
    return removed
