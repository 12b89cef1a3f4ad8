"""One writer at a time per model repository: exports and publishes take a lock file in it.

Two publishes into one repository at once interleave their versions and their rollbacks (one reported a
rollback of a version the other had made serve). The lock is an advisory `flock` on
`<repository>/.tuneship.lock`, released by the kernel if its holder dies; the file names the holder so that
a waiting writer can say whom it waits for. Re-entrant within a thread (publish holds it around export);
other threads of the same process wait like other processes do (each opens the file anew, and flock
locks belong to the open file).
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tuneship.repository.errors import RepositoryError
from tuneship.repository.files import LOCK_TIMEOUT_S

LOCK_NAME = ".tuneship.lock"
_held: dict[tuple[Path, int], int] = {}
_guard = threading.Lock()


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return "another writer"
    return text or "another writer"


@contextmanager
def repository_lock(repository: Path, timeout_s: float = LOCK_TIMEOUT_S, what: str = "export") -> Iterator[None]:
    """Hold the repository's writer lock; wait up to `timeout_s` (0: fail at once) with a message."""
    repository.mkdir(parents=True, exist_ok=True)
    path = (repository / LOCK_NAME).resolve()
    key = (path, threading.get_ident())
    with _guard:
        if key in _held:
            _held[key] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _guard:
                _held[key] -= 1
        return
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            if timeout_s <= 0:
                raise RepositoryError(f"{repository} is being written by {holder}; try again when it is done "
                                  "(or wait for it with --lock-timeout SECONDS)") from None
            print(f"waiting for {holder} to finish writing {repository} (up to {timeout_s:.0f}s) ...",
                  file=sys.stderr, flush=True)
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise RepositoryError(f"{repository} was still being written by {_holder(path)} after "
                                          f"{timeout_s:.0f}s; nothing was published") from None
                    time.sleep(0.2)
        os.ftruncate(handle, 0)
        os.write(handle, f"{what} (pid {os.getpid()}, since {time.strftime('%H:%M:%S')})\n".encode())
        with _guard:
            _held[key] = 1
        try:
            yield
        finally:
            with _guard:
                _held.pop(key, None)
            os.ftruncate(handle, 0)
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        os.close(handle)
