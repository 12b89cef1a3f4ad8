"""A model's versions: publishing the next one aside and renaming it into place, copying one (a tune's chosen
variant, an update's gated candidate, a rollback), pruning old ones, and snapshots to undo a multi-model publish."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from tuneship.repository.configs import CONFIG_FILE, config_path, read_config, to_pbtxt, write_config
from tuneship.repository.errors import RepositoryError
from tuneship.repository.writing import check_model_name, write_text_atomic


def existing_versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


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
        raise RepositoryError(f"--keep must be at least 1, got {keep}")
    versions = existing_versions(model_dir)
    removed = versions[:-keep]
    for version in removed:
        shutil.rmtree(model_dir / str(version), ignore_errors=True)
    return removed


def latest_version(repository: Path, model: str) -> Path:
    """The folder of `model`'s newest version; RepositoryError when it has none."""
    versions = existing_versions(repository / model)
    if not versions:
        raise RepositoryError(f"{repository / model}: no published versions")
    return repository / model / str(versions[-1])


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def publish_copy(source: Path, repository: Path, config: mc.ModelConfig, replace: dict[str, Path] | None = None,
                 link: bool = False, keep: int | None = None) -> int:
    """The version folder `source` (of any repository) as `config.name`'s next version in `repository`, with the
    files named in `replace` taken from elsewhere; published atomically like any version. `link` hard-links
    what it can (large kept variants) instead of copying."""
    replaced = replace or {}
    copy = _link_or_copy if link else shutil.copy2

    def fill(target: Path) -> None:
        for item in source.iterdir():
            if item.name in replaced or item.name == "__pycache__" or item.name.startswith("."):
                continue
            if item.is_dir():
                shutil.copytree(item, target / item.name, copy_function=copy)
            else:
                shutil.copy2(item, target / item.name)
        for name, path in replaced.items():
            shutil.copyfile(path, target / name)

    return publish_version(repository, config, fill, keep)


def copy_version(repository: Path, target: Path, model: str, version: int) -> Path:
    """`model`'s config and version `version` from `repository` into `target` under the same number (a scratch
    repository that must serve what the real one serves), hard-linked where the file system allows."""
    write_config(target, read_config(repository, model))
    destination = target / model / str(version)
    shutil.copytree(repository / model / str(version), destination, copy_function=_link_or_copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return destination


class Snapshot:
    """The configs of `models` as they are before a publish, to undo it if the server will not load the result:
    configs live beside the versions, not inside them, so a new version that fails is removed and the old configs
    go back (each written aside and renamed into place)."""

    def __init__(self, repository: Path, models: list[str]) -> None:
        self.repository = repository
        self.configs = {model: config_path(repository, model).read_bytes() for model in models
                        if config_path(repository, model).is_file()}

    def undo(self, versions: dict[str, int]) -> None:
        """Remove `versions` (model -> version published since) and put the saved configs back."""
        for model, version in versions.items():
            shutil.rmtree(self.repository / model / str(version), ignore_errors=True)
        for model, config in self.configs.items():
            target = config_path(self.repository, model)
            temporary = target.with_name(f".{CONFIG_FILE}.restore")
            temporary.write_bytes(config)
            os.replace(temporary, target)
