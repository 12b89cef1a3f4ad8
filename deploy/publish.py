"""Hot model updates: export the next version into the served repository and make Triton serve it.

A version that fails to load is removed again, so the repository keeps matching what is served,
and the previous version goes on answering (Triton only swaps once the new one is ready).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tuneship.client import TritonClient, TritonError
from tuneship.progress import step
from tuneship.repository import LOCK_TIMEOUT_S

PublishMode = Literal["explicit", "poll"]


class PublishError(RuntimeError):
    """The new version was not published or did not load; the message has Triton's reason."""


@dataclass
class PublishResult:
    name: str
    versions: dict[str, int]
    previous: dict[str, int]
    seconds: float


def served_versions(client: TritonClient, names: list[str]) -> dict[str, int]:
    """The highest READY version of each model, from the repository index (0 when none)."""
    ready: dict[str, int] = {name: 0 for name in names}
    for entry in client.get_model_repository_index():
        if entry.get("name") in ready and entry.get("state") == "READY" and str(entry.get("version", "")).isdigit():
            ready[entry["name"]] = max(ready[entry["name"]], int(entry["version"]))
    return ready


def publish(client: TritonClient, export_options: Any, mode: PublishMode = "explicit",
            timeout_s: float = 180.0) -> PublishResult:
    """Export `export_options.checkpoint` as the next version and switch the running server to it.

    The repository's writer lock is held from before the export until the new version serves (or has been
    rolled back), so two publishes cannot interleave their versions and rollbacks.
    """
    from tuneship.repository import repository_lock

    with repository_lock(Path(export_options.repository), getattr(export_options, "lock_timeout_s", LOCK_TIMEOUT_S),
                         f"tuneship deploy publish of {export_options.checkpoint}"):
        from tuneship.exporter import export_checkpoint

        return switch_to(client, Path(export_options.repository), export_options.name,
                         lambda: export_checkpoint(export_options).versions, mode, timeout_s)


def switch_to(client: TritonClient, repository: Path, name: str, produce: Callable[[], dict[str, int]],
              mode: PublishMode = "explicit", timeout_s: float = 180.0) -> PublishResult:
    """Run `produce` (it writes the pipeline's next versions into the repository and returns them), then make the
    server serve them; on failure remove them again. The caller holds the repository lock."""
    from tuneship.repository import Snapshot, pipeline_models

    models = pipeline_models(repository, name)
    started = time.monotonic()
    previous = served_versions(client, models)  # a TritonError here: nothing was exported or changed
    before = Snapshot(repository, models)
    versions = produce()
    new = ", ".join(f"{m} v{v}" for m, v in versions.items())
    try:
        how = "loading" if mode == "explicit" else "waiting for the server's poll to load"
        with step(f"{how} {new}"):
            if mode == "explicit":
                # Loading the ensemble reloads its composing models; Triton keeps the old versions
                # serving until the new ones are ready, and keeps them if the new ones fail.
                client.load_model(name)
            _wait_for(client, versions, timeout_s)
    except (TritonError, PublishError) as error:
        before.undo(versions)
        if mode == "explicit":
            # Models of the new version that did load (the ensemble, say) go back to the old files.
            with contextlib.suppress(TritonError):
                client.load_model(name)
        # Say what is serving now, as the server reports it, not what was serving before.
        try:
            now = served_versions(client, list(dict.fromkeys([*models, *versions])))
            still = ", ".join(f"{m} v{v}" for m, v in now.items() if v) or "nothing"
        except TritonError as index_error:
            still = f"unknown (the server's index could not be read: {index_error})"
        raise PublishError(f"the new version of {name!r} did not load and was removed: {error}; "
                           f"serving now: {still}") from None
    return PublishResult(name=name, versions=versions, previous=previous,
                         seconds=time.monotonic() - started)


def _wait_for(client: TritonClient, versions: dict[str, int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = {e["name"]: e for e in client.get_model_repository_index()
                  if e.get("name") in versions and str(e.get("version")) == str(versions[e["name"]])}
        failed = {n: e.get("reason", "") for n, e in states.items() if e.get("state") == "UNAVAILABLE"
                  and e.get("reason")}
        if failed:
            raise PublishError("; ".join(f"{n}: {r}" for n, r in failed.items()))
        if all(client.is_model_ready(model, str(version)) for model, version in versions.items()):
            return
        time.sleep(0.5)
    raise PublishError(f"not ready within {timeout_s:.0f}s")
