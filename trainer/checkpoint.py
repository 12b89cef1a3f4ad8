"""The checkpoint directory contract (trainer -> exporter): HF files plus tuneship.json and metrics.json."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneship.trainer.errors import TrainingError

MANIFEST = "tuneship.json"
METRICS = "metrics.json"
EVAL_DATA = "eval.jsonl"
FORMAT_VERSION = 1


def data_fingerprint(texts: Sequence[str], labels: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text, label in zip(texts, labels, strict=True):
        digest.update(text.encode())
        digest.update(b"\x1f")
        digest.update(label.encode())
        digest.update(b"\x1e")
    return "sha256:" + digest.hexdigest()


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("tuneship", "torch", "transformers", "peft", "accelerate", "scikit-learn"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


@dataclass(frozen=True)
class CheckpointInfo:
    """What the exporter needs to know about a checkpoint, read from its manifest."""

    path: Path
    manifest: dict[str, Any]

    @property
    def labels(self) -> list[str]:
        return list(self.manifest["labels"])

    @property
    def max_length(self) -> int:
        return int(self.manifest["max_length"])

    @property
    def method(self) -> str:
        return str(self.manifest["method"])

    @property
    def eval_data(self) -> Path | None:
        path = self.path / EVAL_DATA
        return path if path.is_file() else None


def read_checkpoint(path: Path) -> CheckpointInfo:
    manifest_path = path / MANIFEST
    if not path.is_dir():
        raise TrainingError(f"{path}: checkpoint directory not found")
    if not manifest_path.is_file():
        raise TrainingError(
            f"{path}: not a tuneship checkpoint ({MANIFEST} is missing); train one with `tuneship train`")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise TrainingError(f"{manifest_path}:{error.lineno}: invalid JSON ({error.msg})") from None
    from tuneship.tasks import UnknownTaskError, task

    for key in ("task", "labels", "method"):
        if key not in manifest:
            raise TrainingError(f"{manifest_path}: field {key!r} is missing")
    try:
        sized = task(str(manifest["task"])).sized_by  # images have a size where texts have a length
    except UnknownTaskError as error:
        raise TrainingError(f"{manifest_path}: field 'task': {error}") from None
    if sized not in manifest:
        raise TrainingError(f"{manifest_path}: field {sized!r} is missing")
    return CheckpointInfo(path=path, manifest=manifest)


def make_staging_directory(parent: Path, prefix: str) -> Path:
    """A temporary directory beside its final place (same file system, so rename is atomic).

    mkdtemp creates it private (0700); give it the usual permissions, since it becomes the result.
    """
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)
    return staging


def publish_directory(staging: Path, final: Path, overwrite: bool) -> None:
    """Move a fully written directory into place so readers never see a half-written checkpoint."""
    if final.exists():
        if not overwrite:
            raise TrainingError(f"{final} already exists; pass --overwrite to replace it")
        if not final.is_dir():
            raise TrainingError(f"{final} is a file, not a checkpoint directory; it is left as it is")
        retired = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, retired)
        os.replace(staging, final)
        shutil.rmtree(retired, ignore_errors=True)
        if retired.exists():
            raise TrainingError(f"the new checkpoint is in {final}, but the old one could not be removed from "
                                f"{retired}: remove it by hand")
    else:
        os.replace(staging, final)
