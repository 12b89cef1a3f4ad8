"""The embedded Triton Inference Server: the real `tritonserver` binary, started and stopped from Python.

    with TritonServer(ServeOptions(model_repository=Path("model_repository"), grpc_port=0)) as server:
        print(server.grpc_url)
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

from tuneship.deploy.backend_dir import assemble_backend_dir
from tuneship.deploy.triton_install import TritonInstall

ModelControlMode = Literal["none", "poll", "explicit"]

ADMIN_KEY_NAME = "tuneship-admin-key"
# Triton checks restricted gRPC calls for the key name with this prefix; HTTP calls use the bare name.
ADMIN_HEADER = f"triton-grpc-protocol-{ADMIN_KEY_NAME}"
RESTRICTED_APIS = "model-repository,model-config"
_LOAD_FAILURE = re.compile(r"failed to load '([^']+)' version (\d+): (.*?)\"?$")
_SERVICE_FAILURE = re.compile(r"failed to start (\w+) service: (.*?)\s*\"?$")
# Triton logs one of these per endpoint once it listens; HTTP readiness alone is not proof that
# *this* process owns the port (another server may answer there while ours is failing).
_STARTED = ("Started GRPCInferenceService at", "Started HTTPService at", "Started Metrics Service at")
_ERROR_LINE = re.compile(r"^(error: .*|E\d{4} .*)$")


class ServerError(RuntimeError):
    """The server could not start, or stopped; the message carries Triton's own reason."""


@dataclass
class ServeOptions:
    """How to run the embedded server. A port of 0 means: pick a free one."""

    model_repository: Path = field(metadata={"help": "Triton model repository to serve"})
    grpc_port: int = field(default=8001, metadata={"help": "gRPC port (0: a free port)"})
    http_port: int = field(default=8000, metadata={"help": "HTTP port (0: a free port)"})
    metrics_port: int = field(default=8002, metadata={"help": "Prometheus metrics port (0: a free port)"})
    model_control_mode: ModelControlMode = field(
        default="none", metadata={"help": "none: load all at start; poll: follow the repository; explicit: API"})
    load_models: tuple[str, ...] = field(
        default=(), metadata={"help": "models to load at start in explicit mode ('*' for all)"})
    repository_poll_secs: int = field(default=5, metadata={"help": "poll interval in poll mode"})
    ready_timeout_s: float = field(default=180.0, metadata={"help": "how long to wait for readiness"})
    exit_timeout_s: int = field(default=10, metadata={"help": "grace period for in-flight requests at stop"})
    log_verbose: int = field(default=0, metadata={"help": "Triton's --log-verbose level"})
    log_file: Path | None = field(default=None, metadata={"help": "where Triton's log goes (default: temp)"})
    admin_key: str | None = field(default=None, metadata={
        "help": "restrict the model-repository and model-config APIs to callers sending this key"})
    extra_args: tuple[str, ...] = field(default=(), metadata={"help": "more tritonserver arguments"})


def free_port() -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    # A killed test or CLI process must not leave a server (and its stubs) behind. Linux sends this signal
    # when the *thread* that started the child ends, so it is only set from the main thread (see start()).
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class TritonServer:
    """One `tritonserver` process with its assembled backend directory; a context manager."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.grpc_port = options.grpc_port or free_port()
        self.http_port = options.http_port or free_port()
        self.metrics_port = options.metrics_port or free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._log_path: Path | None = None

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def log_path(self) -> Path:
        if self._log_path is None:
            raise ServerError("the server has not been started")
        return self._log_path

    def log_text(self) -> str:
        """Everything the server has logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def command(self, backend_dir: Path) -> list[str]:
        """The tritonserver command line (without the binary)."""
        o = self.options
        args = [
            f"--model-repository={Path(o.model_repository).resolve()}",
            f"--backend-directory={backend_dir}",
            f"--grpc-port={self.grpc_port}",
            f"--http-port={self.http_port}",
            f"--metrics-port={self.metrics_port}",
            f"--model-control-mode={o.model_control_mode}",
            "--allow-metrics=true",
            "--allow-cpu-metrics=true",
            "--metrics-config=summary_latencies=true",
            f"--exit-timeout-secs={o.exit_timeout_s}",
            f"--log-verbose={o.log_verbose}",
        ]
        if o.model_control_mode == "poll":
            args.append(f"--repository-poll-secs={o.repository_poll_secs}")
        args.extend(f"--load-model={name}" for name in o.load_models)
        if o.admin_key:
            # Load, unload, repository index and model config need the key; inference, health and
            # metadata stay open. Same header on gRPC and HTTP.
            args.append(f"--grpc-restricted-protocol={RESTRICTED_APIS}:{ADMIN_KEY_NAME}={o.admin_key}")
            args.append(f"--http-restricted-api={RESTRICTED_APIS}:{ADMIN_KEY_NAME}={o.admin_key}")
        args.extend(o.extra_args)
        return args

    def start(self) -> TritonServer:
        """Start the server and wait until it is ready; raise ServerError with Triton's reason if not."""
        repository = Path(self.options.model_repository)
        if not repository.is_dir():
            raise ServerError(f"model repository {repository} does not exist or is not a directory")
        install = TritonInstall.locate()
        self._workdir = Path(tempfile.mkdtemp(prefix="tuneship-triton-"))
        backend_dir = assemble_backend_dir(self._workdir / "backends", install)
        self._log_path = self.options.log_file or self._workdir / "tritonserver.log"
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        # The stub's embedded Python ignores PYTHON* variables but finds its prefix by looking up
        # "python3" on PATH: with this interpreter's directory first, a venv's pyvenv.cfg is found
        # and the stub sees the venv's site-packages instead of the base interpreter's.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            [str(d) for d in install.library_dirs] + [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
        )
        with open(self._log_path, "wb") as log:
            self._process = subprocess.Popen(
                [str(install.server_binary), *self.command(backend_dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                # From another thread the server would be killed as soon as that thread returned (a restart
                # done by a worker thread, say); there, stop() and the atexit hook below are the cleanup.
                preexec_fn=_die_with_parent if threading.current_thread() is threading.main_thread() else None,
            )
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def is_ready(self) -> bool:
        """Whether the server answers ready on its HTTP health endpoint."""
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as response:
                return int(response.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.options.ready_timeout_s
        while time.monotonic() < deadline:
            process = self._process
            assert process is not None
            code = process.poll()
            if code is not None:
                raise ServerError(f"Triton exited with code {code} while starting: {self.failure_reason()}")
            log = self.log_text()
            failures = self.load_failures(log)
            if failures:
                details = "; ".join(f"model '{m}' failed to load: {r}" for m, r in failures.items())
                raise ServerError(f"Triton could not load a model: {details} (log: {self.log_path})")
            service_failures = self.service_failures(log)
            if service_failures:
                raise ServerError(f"Triton could not start: {'; '.join(service_failures)}")
            if all(marker in log for marker in _STARTED) and self.is_ready():
                return
            time.sleep(0.2)
        raise ServerError(
            f"Triton was not ready after {self.options.ready_timeout_s:.0f}s; last log lines:\n"
            + "\n".join(self.log_text().splitlines()[-15:])
        )

    def load_failures(self, log: str | None = None) -> dict[str, str]:
        """Models that failed to load, with Triton's reason, from the server log (or `log`, already read)."""
        failures: dict[str, str] = {}
        for line in (self.log_text() if log is None else log).splitlines():
            match = _LOAD_FAILURE.search(line)
            if match:
                reason = match.group(3).replace("\\n", " ").strip()
                failures[match.group(1)] = re.sub(r"\s+At:.*$", "", reason)
        return failures

    def service_failures(self, log: str | None = None) -> list[str]:
        """Endpoints that failed to start (a taken port, usually), in Triton's words plus a hint."""
        messages = []
        for line in (self.log_text() if log is None else log).splitlines():
            match = _SERVICE_FAILURE.search(line)
            if match:
                service, reason = match.group(1), match.group(2).strip()
                flag = {"GRPC": "--grpc-port", "HTTP": "--http-port", "Metrics": "--metrics-port"}.get(service, "")
                hint = f" (is another server running? choose another port with {flag})" if "in use" in reason else ""
                messages.append(f"failed to start {service} service: {reason}{hint}")
        return messages

    def failure_reason(self) -> str:
        """The most useful explanation the log gives for a failed start."""
        log = self.log_text()
        failures = self.load_failures(log)
        if failures:
            return "; ".join(f"model '{m}' failed to load: {r}" for m, r in failures.items())
        services = self.service_failures(log)
        if services:
            return "; ".join(services)
        lines = log.splitlines()
        errors = [line.strip() for line in lines if _ERROR_LINE.match(line.strip())]
        if errors:
            return " | ".join(errors[-3:])
        return "\n".join(lines[-10:]) or "no log output"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """Stop gracefully (SIGINT, then SIGKILL after the grace period); idempotent."""
        process = self._process
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=self.options.exit_timeout_s + 10)
            # Stubs share the server's process group: make sure none outlives it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            self._process = None
            atexit.unregister(self.stop)
        if self._workdir is not None:
            shutil.rmtree(self._workdir / "backends", ignore_errors=True)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
