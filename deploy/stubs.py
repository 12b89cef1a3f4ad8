"""The Python-backend stub processes of one tritonserver: finding them, and what they leave behind.

Triton runs every instance of a Python model (and of our ONNX Runtime bridge) in a stub process, a child
of the server, with a shared-memory region in /dev/shm. Triton 2.51 does not notice a stub that died
(killed, out of memory): it answers every request to that model with "Stub process ... is not healthy"
while reporting the model and the server ready, and the dead stub's region stays in /dev/shm. This module
reads the stubs from /proc so that the server's owner can notice, and clean up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

STUB_NAME = "triton_python_backend_stub"
SHM_DIR = Path("/dev/shm")


@dataclass(frozen=True)
class Stub:
    """One stub process: the model (and instance) it serves, and its shared-memory region."""

    pid: int
    model: str
    instance: str
    shm_region: str


def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 (after the parenthesised command, which may contain spaces) is the parent pid.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(parent):
            found.append(int(entry.name))
    return found


def parse_stub(pid: int, argv: list[str]) -> Stub | None:
    """A stub's identity from its command line: model file path, shm region, ..., instance name.

    The model name is the directory two levels above the model file (`<repository>/<model>/<version>/<file>`).
    """
    if not argv or not argv[0].endswith(STUB_NAME) or len(argv) < 9:
        return None
    model_file = Path(argv[1])
    return Stub(pid=pid, model=model_file.parent.parent.name, instance=argv[8], shm_region=argv[2])


def list_stubs(server_pid: int) -> list[Stub]:
    """The live stub processes of the server with this pid."""
    stubs = []
    for pid in _children(server_pid):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        stub = parse_stub(pid, raw.decode(errors="replace").split("\0"))
        if stub is not None and _alive(pid):
            stubs.append(stub)
    return stubs


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def remove_shm_regions(regions: set[str]) -> list[str]:
    """Delete the /dev/shm files of these regions (a region may have several files sharing its name);
    returns what was removed. Call only once the stubs that used them are gone."""
    removed: list[str] = []
    if not regions or not SHM_DIR.is_dir():
        return removed
    for entry in SHM_DIR.iterdir():
        if any(entry.name.startswith(region) for region in regions):
            try:
                entry.unlink()
                removed.append(entry.name)
            except OSError:
                continue
    return removed


def describe_exit(code: int | None) -> str:
    """How a process ended, in words: 'killed by SIGKILL', 'exited with status 1'."""
    import signal

    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _alive(pid)
