"""The model repository layer: which models make up a published pipeline, their configs, their versions.

Publishing builds the next version aside and renames it into place; copying a version (a tune's chosen variant,
an update's gated candidate, a rollback) goes through the same path. `Pipeline` resolves a published pipeline's
layout once and answers every question about it (its models in load order, the step holding the graph, each
step's config), so no other module spells `<name>_model` or parses a config to guess a layout.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from tuneship.exporter.errors import ExportError
from tuneship.exporter.model_configs import is_single_model, parse_pbtxt, to_pbtxt
from tuneship.model_names import step_model

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


CONFIG_FILE = "config.pbtxt"


def config_path(repository: Path, model: str) -> Path:
    """Where `model`'s config lives (beside its versions, not inside them)."""
    return repository / model / CONFIG_FILE


def read_config(repository: Path, model: str) -> mc.ModelConfig:
    """`<repository>/<model>/config.pbtxt`; ExportError naming the file when it is missing or not a config."""
    from google.protobuf import text_format

    path = config_path(repository, model)
    if not path.is_file():
        raise ExportError(f"{path} does not exist: is {model!r} in this repository?")
    try:
        return parse_pbtxt(path.read_text(encoding="utf-8"))
    except text_format.ParseError as error:
        raise ExportError(f"{path}: not a valid Triton model config ({error})") from None


def write_config(repository: Path, config: mc.ModelConfig) -> Path:
    """Write a model's config.pbtxt atomically (a polling server never reads half of it); its path."""
    path = repository / check_model_name(config.name) / "config.pbtxt"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, to_pbtxt(config))
    return path


def latest_version(repository: Path, model: str) -> Path:
    """The folder of `model`'s newest version; ExportError when it has none."""
    versions = existing_versions(repository / model)
    if not versions:
        raise ExportError(f"{repository / model}: no published versions")
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


class Pipeline:
    """A published pipeline `name` in `repository`, its layout read once from the config of the model callers
    use: "ensemble" (`<name>` scheduling its steps), "single" (`<name>` alone: one Python model running the graph
    itself), "other" (a model tuneship did not publish as a pipeline) or None (no such model)."""

    def __init__(self, repository: Path, name: str) -> None:
        self.repository = repository
        self.name = name
        self.caller = read_config(repository, name) if (repository / name / "config.pbtxt").is_file() else None
        self.layout: str | None = None
        if self.caller is not None:
            self.layout = "single" if is_single_model(self.caller) else \
                "ensemble" if self.caller.platform == "ensemble" else "other"
        self._configs: dict[str, mc.ModelConfig] = {name: self.caller} if self.caller is not None else {}

    @property
    def exists(self) -> bool:
        return self.caller is not None

    @property
    def single_model(self) -> bool:
        """Whether the caller's model is the whole pipeline (fused, or a model of its own such as a generator)."""
        return self.layout != "ensemble"

    @property
    def models(self) -> list[str]:
        """The pipeline's models, the one callers use last (the order they are loaded in)."""
        if self.caller is None or self.layout != "ensemble":
            return [self.name]
        return [step.model_name for step in self.caller.ensemble_scheduling.step] + [self.name]

    def step(self, step: str) -> str:
        """The model that holds `step` ("tokenizer", "preprocess", "graph", "postprocess"): the caller's own
        model in a single-model layout, else the ensemble's step."""
        return self.name if self.single_model else step_model(self.name, step)

    @property
    def graph_model(self) -> str:
        """The model whose versions hold the graph (and so number the pipeline's versions)."""
        return self.step("graph")

    def config(self, model: str) -> mc.ModelConfig:
        """A model's config, read once; ExportError naming the file when it is missing."""
        if model not in self._configs:
            if not (self.repository / model / "config.pbtxt").is_file():
                raise ExportError(f"{self.repository / model / 'config.pbtxt'} does not exist: the published "
                                  f"pipeline {self.name!r} is incomplete")
            self._configs[model] = read_config(self.repository, model)
        return self._configs[model]

    def version_dir(self, model: str, version: int | None = None) -> Path:
        """A model's version folder (default: its newest)."""
        if version is None:
            return latest_version(self.repository, model)
        folder = self.repository / model / str(version)
        if not folder.is_dir():
            raise ExportError(f"{folder}: no such version (versions: {existing_versions(self.repository / model)})")
        return folder
