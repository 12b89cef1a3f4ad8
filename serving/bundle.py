"""What a published generator carries of this package: the Triton model as `model.py`, and the engine's modules as
the package `tuneship_serving/` beside it (relative imports inside, so the same files run in the source tree as
`tuneship.serving` and in a model repository, in Triton's own image too, where tuneship is not installed)."""

from __future__ import annotations

import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = "tuneship_serving"
MODEL = Path("triton") / "generator.py"
# The engine and what the Triton model uses of it; nothing else of the package goes into a repository.
MODULES = (
    "__init__.py", "adapters.py", "answers.py", "chat.py", "constraints.py", "engine.py", "kv_cache.py",
    "params.py", "prefix_cache.py", "runner.py", "sampling.py", "scheduler.py", "streaming.py",
    "triton/__init__.py", "triton/metrics.py",
)
# What the Triton Python backend's environment needs for it (requirements.txt beside the model's config).
REQUIREMENTS = ("numpy<2", "onnxruntime>=1.17", "onnx>=1.16", "tokenizers>=0.21", "jinja2>=3.1.6",
                "llguidance>=1.2,<2", "safetensors>=0.4")


def publish_bundle(version_dir: Path) -> None:
    """Copy the Triton model and the engine into a version folder being published."""
    shutil.copy2(HERE / MODEL, version_dir / "model.py")
    for module in MODULES:
        target = version_dir / PACKAGE / module
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(HERE / module, target)


def requirements() -> str:
    return ("# Needed by this Python model in the Triton image: pip install -r requirements.txt\n"
            + "".join(f"{line}\n" for line in REQUIREMENTS))
