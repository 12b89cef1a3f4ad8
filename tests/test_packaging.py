"""The distribution installs one import package, `tuneship`, and its client extra needs no torch."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
import tomllib
from lanes import costs

ROOT = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


@pytest.fixture(scope="module")
@costs("slow")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check",
                    "-w", str(out), str(ROOT)], check=True, capture_output=True, text=True)
    (found,) = out.glob("tuneship-*.whl")
    return found


def test_the_wheel_installs_only_the_tuneship_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"tuneship"}
    for module in ("tuneship/__init__.py", "tuneship/cli.py", "tuneship/client/grpc_client.py",
                   "tuneship/trainer/text/training.py", "tuneship/exporter/text/export.py", "tuneship/deploy/server.py",
                   "tuneship/deploy/onnxruntime_bridge/model.py", "tuneship/exporter/triton_models/tokenizer.py",
                   "tuneship/client/sample_reviews.txt", "tuneship/client/py.typed"):
        assert module in names, module
    entry_points = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "tuneship = tuneship.cli:main" in entry_points


def test_the_client_extra_imports_without_torch(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(target)
    python = target / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              f"{wheel}[client]"], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    check = (
        "import importlib.util, sys\n"
        "import tuneship, tuneship.client\n"
        "from tuneship.client import TextClassifier, TritonClient\n"
        "assert importlib.util.find_spec('torch') is None, 'torch was installed by the client extra'\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'onnxruntime', 'sklearn') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "print(tuneship.__version__)\n"
    )
    # Run outside the checkout so that the checkout's folders cannot stand in for the installed package.
    result = subprocess.run([str(python), "-c", check], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == VERSION
    version = subprocess.run([str(target / "bin" / "tuneship"), "--version"], capture_output=True, text=True,
                             cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"tuneship {VERSION}", version.stderr
    # Every subcommand's help works with the client alone: stage CLIs import their heavy stacks only when run.
    usage = subprocess.run([str(target / "bin" / "tuneship"), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert usage.returncode == 0 and "infer" in usage.stdout and "train" in usage.stdout, usage.stderr
