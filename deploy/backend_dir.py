"""Assemble the `--backend-directory` for the embedded server.

The wheel ships the Python backend but no ONNX Runtime backend. Triton treats
`<backend-dir>/<name>/model.py` without a `libtriton_<name>.so` as a Python-based backend, so
`platform: "onnxruntime_onnx"` models load through our bridge (deploy/onnxruntime_bridge/model.py)
running the `onnxruntime` package. In the NGC image the native backend is found first instead.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from tuneship.deploy.triton_install import TritonInstall, site_packages_dirs

PYTHON_BACKEND_UTILS = "triton_python_backend_utils.py"

# The stub's embedded interpreter ignores PYTHONPATH, and triton_python_backend_utils imports numpy
# before any model code runs, so the environment's site-packages are added at the top of that module.
# They go first on sys.path: a numpy >= 2 in the base interpreter's site-packages must not win.
_SITE_HEADER = '''# Added by tuneship: make this environment's packages visible to the backend stub.
import site as _tuneship_site
import sys as _tuneship_sys

for _tuneship_dir in reversed({dirs!r}):
    _tuneship_before = list(_tuneship_sys.path)
    _tuneship_site.addsitedir(_tuneship_dir)
    _tuneship_new = [p for p in _tuneship_sys.path if p not in _tuneship_before]
    _tuneship_sys.path[:] = _tuneship_new + _tuneship_before
'''


def assemble_backend_dir(target: Path, install: TritonInstall) -> Path:
    """Write a backend directory with `python/` (library, stub, utils) and `onnxruntime/` (bridge)."""
    python_dir = target / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for item in install.python_backend_dir.iterdir():
        if item.is_file() and item.name != PYTHON_BACKEND_UTILS:
            shutil.copy2(item, python_dir / item.name)
    shutil.copy2(install.python_stub, python_dir / install.python_stub.name)
    utils_source = (install.python_backend_dir / PYTHON_BACKEND_UTILS).read_text()
    header = _SITE_HEADER.format(dirs=site_packages_dirs())
    (python_dir / PYTHON_BACKEND_UTILS).write_text(header + "\n" + utils_source)

    bridge_dir = target / "onnxruntime"
    bridge_dir.mkdir(parents=True, exist_ok=True)
    bridge_source = resources.files("tuneship.deploy.onnxruntime_bridge").joinpath("model.py").read_text()
    (bridge_dir / "model.py").write_text(bridge_source)
    return target
