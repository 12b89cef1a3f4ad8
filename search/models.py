"""The base models a search tries: the built-in ones or local folders, and for encoders shallower copies (the
bottom layers kept, the top ones dropped), written once into the search's folder."""

from __future__ import annotations

import shutil
from pathlib import Path

from tuneship.search.options import SearchError, SearchOptions
from tuneship.space import TaskSpace


def _label(name: str) -> str:
    return Path(name).name if ("/" in name or Path(name).is_dir()) else name


def _check_folder(name: str) -> None:
    path = Path(name)
    if ("/" in name or path.exists()) and not (path / "config.json").is_file():
        raise SearchError(f"--model {name}: not a Hugging Face model folder (no config.json in it)")


def base_models(options: SearchOptions, space: TaskSpace, default_model: str) -> dict[str, str]:
    """Label -> the --model training takes, for every model and shallower copy the search tries."""
    names = list(dict.fromkeys(options.models or space.models or (default_model,)))
    if options.layers and not space.layered:
        raise SearchError(f"--layers: shallower copies are for encoders; --task {options.task} does not take them")
    models: dict[str, str] = {}
    for name in names:
        _check_folder(name)
        label = _label(name)
        models[label] = name
        for layers in sorted(set(options.layers)):
            models[f"{label}-L{layers}"] = str(shallow_copy(name, layers, options.output / "models"))
    return models


def shallow_copy(name: str, layers: int, folder: Path) -> Path:
    """The encoder `name` with only its bottom `layers` layers (its config says so; the weights of the others are
    not loaded), saved once with its tokenizer."""
    target = folder / f"{_label(name)}-L{layers}"
    if (target / "config.json").is_file():
        return target
    import transformers
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from tuneship.trainer import TrainingError
    from tuneship.trainer.text.base_models import resolve_base_model

    try:
        base = resolve_base_model(name)
        config = AutoConfig.from_pretrained(str(base))
    except (TrainingError, OSError, ValueError) as error:
        raise SearchError(f"--model {name}: cannot be loaded: {str(error).splitlines()[0]}") from None
    depth = getattr(config, "num_hidden_layers", None)
    if depth is None:
        raise SearchError(f"--model {name}: its config has no num_hidden_layers, so --layers cannot shorten it")
    if not 0 < layers < depth:
        raise SearchError(f"--layers {layers}: {name} has {depth} layers; keep between 1 and {depth - 1}")
    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    model = AutoModel.from_pretrained(str(base), num_hidden_layers=layers)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    staging = folder / f".{target.name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.save_pretrained(str(staging))
    tokenizer.save_pretrained(str(staging))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target
