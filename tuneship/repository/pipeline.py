"""A published pipeline: its layout resolved once from the caller's config, its models in load order, the step
holding the graph, each step's config; no other module spells `<name>_model` or parses a config to guess a
layout."""

from __future__ import annotations

from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from tuneship.model_names import step_model
from tuneship.repository.configs import is_single_model, read_config
from tuneship.repository.errors import RepositoryError
from tuneship.repository.versions import existing_versions, latest_version


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
        """A model's config, read once; RepositoryError naming the file when it is missing."""
        if model not in self._configs:
            if not (self.repository / model / "config.pbtxt").is_file():
                raise RepositoryError(f"{self.repository / model / 'config.pbtxt'} does not exist: the published "
                                  f"pipeline {self.name!r} is incomplete")
            self._configs[model] = read_config(self.repository, model)
        return self._configs[model]

    def version_dir(self, model: str, version: int | None = None) -> Path:
        """A model's version folder (default: its newest)."""
        if version is None:
            return latest_version(self.repository, model)
        folder = self.repository / model / str(version)
        if not folder.is_dir():
            raise RepositoryError(f"{folder}: no such version (versions: {existing_versions(self.repository / model)})")
        return folder


def served_layout(repository: Path, name: str) -> str | None:
    """"ensemble", "single", "other" (a model tuneship did not publish as a classifier) or None (no such model)."""
    return Pipeline(repository, name).layout


def pipeline_models(repository: Path, name: str) -> list[str]:
    """The models a published pipeline is made of, the one callers use last (the order they are loaded in)."""
    return Pipeline(repository, name).models


def graph_model(repository: Path, name: str) -> str:
    """The model whose versions hold the ONNX graph (and so number the pipeline's versions)."""
    return Pipeline(repository, name).graph_model
