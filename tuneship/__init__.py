"""tuneship: fine-tune a pre-trained model, export it to a Triton model repository, serve and monitor it.

One import package for the whole pipeline; each stage is a subpackage (`tuneship.trainer`,
`tuneship.exporter`, `tuneship.deploy`, `tuneship.client`) whose folder sits at the repository's top
level, mapped here by setuptools. Importing `tuneship` is cheap: no stage is imported until used.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tuneship")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
