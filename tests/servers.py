"""Starting the embedded Triton for tests: one helper, free loopback ports, stopped when the block ends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tuneship.deploy import TritonServer


@contextmanager
def running_server(repository: Path, **options: object) -> Iterator[TritonServer]:
    """The embedded Triton on free loopback ports serving `repository` (ServeOptions fields as keywords)."""
    from tuneship.deploy import ServeOptions, TritonServer

    settings = {"grpc_port": 0, "http_port": 0, "metrics_port": 0, **options}
    with TritonServer(ServeOptions(model_repository=repository, **settings)) as server:  # type: ignore[arg-type]
        yield server


