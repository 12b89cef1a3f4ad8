"""Triton model configs in a repository: where they are, reading and writing them (`config.pbtxt`, protobuf text),
and which layout a classifier's config says it has."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from tuneship.repository.errors import RepositoryError
from tuneship.repository.writing import check_model_name, write_text_atomic

LAYOUTS = ("ensemble", "single")
"""How a classifier is published: an ensemble of tokenizer, graph and postprocess models, or one Python model."""
LAYOUT_ALIASES = {"fused": "single"}


def is_single_model(config: mc.ModelConfig) -> bool:
    """Whether `config` is a single-model classifier (one Python model running the ONNX graph itself)."""
    return config.backend == "python" and "layout" in config.parameters and \
        config.parameters["layout"].string_value in ("single", *LAYOUT_ALIASES)


def to_pbtxt(config: mc.ModelConfig) -> str:
    return str(text_format.MessageToString(config))


def parse_pbtxt(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


CONFIG_FILE = "config.pbtxt"


def config_path(repository: Path, model: str) -> Path:
    """Where `model`'s config lives (beside its versions, not inside them)."""
    return repository / model / CONFIG_FILE


def read_config(repository: Path, model: str) -> mc.ModelConfig:
    """`<repository>/<model>/config.pbtxt`; RepositoryError naming the file when it is missing or not a config."""
    from google.protobuf import text_format

    path = config_path(repository, model)
    if not path.is_file():
        raise RepositoryError(f"{path} does not exist: is {model!r} in this repository?")
    try:
        return parse_pbtxt(path.read_text(encoding="utf-8"))
    except text_format.ParseError as error:
        raise RepositoryError(f"{path}: not a valid Triton model config ({error})") from None


def write_config(repository: Path, config: mc.ModelConfig) -> Path:
    """Write a model's config.pbtxt atomically (a polling server never reads half of it); its path."""
    path = repository / check_model_name(config.name) / "config.pbtxt"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, to_pbtxt(config))
    return path


def published_at(repository: Path, model: str) -> int | None:
    """When `model` was last published (its config's modification time, seconds since the epoch); None if absent."""
    try:
        return int(config_path(repository, model).stat().st_mtime)
    except OSError:
        return None
