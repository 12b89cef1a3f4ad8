"""Where the `tritonserver` binary and its Python backend live inside the nvidia-pytriton wheel.

The wheel is used only as a carrier of the server binary; PyTriton's own Python API is not used.
"""

from __future__ import annotations

import importlib.util
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = 'install the serving extra: pip install "tuneship[serve]" (it brings nvidia-pytriton)'


class TritonNotInstalledError(RuntimeError):
    """The Triton server binary (from nvidia-pytriton) cannot be found."""


@dataclass(frozen=True)
class TritonInstall:
    """Paths to the server pieces shipped in the nvidia-pytriton wheel."""

    server_binary: Path
    python_backend_dir: Path
    python_stub: Path
    library_dirs: tuple[Path, ...]

    @classmethod
    def locate(cls) -> TritonInstall:
        spec = importlib.util.find_spec("pytriton")
        if spec is None or not spec.submodule_search_locations:
            raise TritonNotInstalledError(f"nvidia-pytriton is not installed: {INSTALL_HINT}")
        package_dir = Path(next(iter(spec.submodule_search_locations)))
        root = package_dir / "tritonserver"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        install = cls(
            server_binary=root / "bin" / "tritonserver",
            python_backend_dir=root / "backends" / "python",
            python_stub=root / "python_backend_stubs" / version / "triton_python_backend_stub",
            library_dirs=_library_dirs(package_dir.parent),
        )
        for path in (install.server_binary, install.python_backend_dir, install.python_stub):
            if not path.exists():
                raise TritonNotInstalledError(
                    f"{path} is missing from the nvidia-pytriton install (Python {version}); {INSTALL_HINT}"
                )
        return install


def _library_dirs(site_packages: Path) -> tuple[Path, ...]:
    # The stub links libpython3.x: put the running interpreter's own library first so the stub
    # embeds the same Python (and stdlib) as this environment, then the wheel's bundled libraries.
    dirs: list[Path] = []
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir and Path(libdir).is_dir():
        dirs.append(Path(libdir))
    bundled = site_packages / "nvidia_pytriton.libs"
    if bundled.is_dir():
        dirs.append(bundled)
    return tuple(dirs)


def site_packages_dirs() -> list[str]:
    """Site directories of the running environment, which the Python backend stub must see."""
    paths = sysconfig.get_paths()
    seen: list[str] = []
    for key in ("purelib", "platlib"):
        value = paths.get(key)
        if value and value not in seen:
            seen.append(value)
    return seen
