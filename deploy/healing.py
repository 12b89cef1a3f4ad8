"""Notice a dead Python-backend stub and bring its model back.

Triton 2.51 keeps answering "Stub process ... is not healthy" for a model whose stub died, while it reports
the model ready. The watcher polls the server's stubs; when one disappears it probes the model with a real
request (a stub also disappears when a model is legitimately unloaded or reloaded, and then the probe does
not say "not healthy"), and a broken model is reloaded through the model-control API. If reloading does not
bring it back, the server is restarted as a last resort.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from tuneship.client import (
    PROBE_PARAMETER,
    ClientOptions,
    RetryPolicy,
    TritonClient,
    TritonError,
    generation_probe,
    probe_inputs,
    stream_once,
)
from tuneship.deploy.stubs import Stub, list_stubs

if TYPE_CHECKING:
    from tuneship.deploy.server import TritonServer

BROKEN_MARKER = "is not healthy"


def model_is_broken(client: TritonClient, model: str, tries: int = 3) -> bool:
    """Whether requests to `model` fail because its stub is gone (several tries: one of several instances)."""
    try:
        metadata = client.get_model_metadata(model)
    except TritonError:
        return False  # unloaded or reloading: not the dead-stub state
    generation = generation_probe(metadata, "a probe of the model")
    for _ in range(tries):
        try:
            if generation is not None:  # decoupled: the stream is the only way in
                stream_once(client, model, generation, 10.0)
            else:
                client.infer(model, probe_inputs(metadata), validate=False, timeout_s=10,
                             parameters={PROBE_PARAMETER: True})
        except TritonError as error:
            if BROKEN_MARKER in str(error):
                return True
    return False


def force_reload(client: TritonClient, model: str) -> None:
    """Load `model` again with its own configuration, marked so that Triton cannot take it as unchanged.

    A plain load request for a model whose files did not change is a no-op in Triton 2.51, even when its stub
    is dead; a configuration that differs (here by one parameter no model reads) makes Triton build new
    instances, stubs included, and switch to them once they are ready.
    """
    config = client.get_model_config(model)
    config.setdefault("parameters", {})["tuneship_reloaded_at"] = {"string_value": f"{time.time():.6f}"}
    client.load_model(model, config=config)


class StubWatcher:
    """A daemon thread beside a running TritonServer; `log` receives one line per event."""

    def __init__(self, server: TritonServer, log: Callable[[str], None], interval_s: float = 0.5,
                 reload_timeout_s: float = 30.0) -> None:
        self.server = server
        self.log = log
        self.interval_s = interval_s
        self.reload_timeout_s = reload_timeout_s
        self.regions: set[str] = set()
        self.deaths = 0
        self.heals = 0
        self.restarts = 0
        self.broken: set[str] = set()
        self._stop = threading.Event()
        self._known: dict[int, Stub] = {}
        self._thread = threading.Thread(target=self._run, name="tuneship-stub-watcher", daemon=True)

    def start(self) -> StubWatcher:
        # The first look is taken before start() returns: a stub that dies right after the server came up (before
        # the thread's first poll) is then still noticed as gone.
        self._known = self._scan() or {}
        self._thread.start()
        return self

    def _scan(self) -> dict[int, Stub] | None:
        """The server's stubs now, or None while it has no process (restarting)."""
        pid = self.server.pid
        if pid is None:
            return None
        current = {stub.pid: stub for stub in list_stubs(pid)}
        self.regions.update(stub.shm_region for stub in current.values())
        return current

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)

    @property
    def healthy(self) -> bool:
        return not self.broken

    def _client(self) -> TritonClient:
        headers = self.server.admin_headers()
        options = ClientOptions(timeout_s=self.reload_timeout_s, headers=headers, retry=RetryPolicy(max_attempts=1),
                                tls=self.server.client_tls())
        return TritonClient(self.server.grpc_url, options)

    def _run(self) -> None:
        known = self._known
        while not self._stop.wait(self.interval_s):
            current = self._scan()
            if current is None:  # restarting: the new server's stubs are a new baseline
                known = {}
                continue
            gone = [stub for stub_pid, stub in known.items() if stub_pid not in current]
            known = current
            for model in sorted({stub.model for stub in gone}):
                if self._stop.is_set():
                    return
                try:
                    self._check(model, [s for s in gone if s.model == model])
                except Exception as error:  # the watcher must outlive any one failure
                    self.log(f"stub watcher: checking {model!r} failed: {error}")

    def _check(self, model: str, dead: list[Stub]) -> None:
        with self._client() as client:
            if not model_is_broken(client, model):
                return
            self.deaths += 1
            self.broken.add(model)
            pids = ", ".join(str(s.pid) for s in dead)
            self.log(f"stub process {pids} of model {model!r} died; Triton answers 'not healthy' for it: "
                     f"reloading {model}")
            started = time.monotonic()
            for attempt in range(1, 3):
                try:
                    force_reload(client, model)
                except TritonError as error:
                    self.log(f"reloading {model} (attempt {attempt}) failed: {error}")
                    continue
                if not model_is_broken(client, model):
                    self.broken.discard(model)
                    self.heals += 1
                    self.log(f"model {model!r} reloaded and answering again after "
                             f"{time.monotonic() - started:.1f}s")
                    return
        self.log(f"model {model!r} is still broken after reloading: restarting Triton")
        self.restarts += 1
        self.server.restart()
        self.broken.discard(model)
        self.log(f"Triton restarted after {time.monotonic() - started:.1f}s")
