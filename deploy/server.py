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
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from tuneship.client import ADMIN_HEADER
from tuneship.deploy.backend_dir import assemble_backend_dir
from tuneship.deploy.healing import StubWatcher
from tuneship.deploy.options import ServeOptions
from tuneship.deploy.stubs import describe_exit, list_stubs, remove_shm_regions
from tuneship.deploy.triton_install import TritonInstall

ADMIN_KEY_NAME = ADMIN_HEADER.removeprefix("triton-grpc-protocol-")
# Every endpoint category Triton can restrict except health, metadata and inference, which callers need.
RESTRICTED_APIS = "model-repository,model-config,shared-memory,statistics,trace,logging"
_LOAD_FAILURE = re.compile(r"failed to load '([^']+)' version (\d+): (.*?)\"?$")
_SERVICE_FAILURE = re.compile(r"failed to start (\w+) service: (.*?)\s*\"?$")
# Triton logs one of these per endpoint once it listens; HTTP readiness alone is not proof that
# *this* process owns the port (another server may answer there while ours is failing).
_STARTED = ("Started GRPCInferenceService at", "Started HTTPService at", "Started Metrics Service at")
# Logged once a second while Triton shuts down, after in-flight inferences have finished.
_LIVE_MODELS = re.compile(r"Timeout \d+: Found (\d+) live models and (\d+) in-flight non-inference requests")
_ERROR_LINE = re.compile(r"^(error: .*|E\d{4} .*)$")
# Errors every CPU-only start logs (no GPU driver, no NVML): never the reason a server stopped.
_HARMLESS = re.compile(r"CUDA|cuda|NVML|nvml|GPU|DCGM|dcgm", re.IGNORECASE)


class ServerError(RuntimeError):
    """The server could not start, or stopped; the message carries Triton's own reason."""


def free_port() -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """`count` different free ports: the sockets stay bound until all are picked, so the kernel cannot hand the
    same port out twice (separate picks once gave the HTTP and metrics endpoints one port, and Triton refused)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _log_to_stderr(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} tuneship: {message}", file=sys.stderr, flush=True)


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

    def __init__(self, options: ServeOptions, log: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.log = log or _log_to_stderr
        self.watcher: StubWatcher | None = None
        self.exit_code: int | None = None
        self.restarting = False
        spare = iter(free_ports(3))
        self.grpc_port = options.grpc_port or next(spare)
        self.http_port = options.http_port or next(spare)
        self.metrics_port = options.metrics_port or next(spare)
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._log_path: Path | None = None

    @property
    def connect_host(self) -> str:
        """Where a client on this machine reaches the server (a wildcard bind is reached on loopback)."""
        host = self.options.host
        if host in ("0.0.0.0", "", "*"):
            return "127.0.0.1"
        if host == "::":
            return "[::1]"
        return f"[{host}]" if ":" in host else host

    @property
    def grpc_url(self) -> str:
        return f"{self.connect_host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"{self.connect_host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.connect_host}:{self.metrics_port}/metrics"

    def listening(self) -> str:
        """The addresses bound, for the banner: what other machines can reach, and what only this one can."""
        host = self.options.host
        scope = ("every interface" if host in ("0.0.0.0", "::", "") else
                 "this machine only" if host in ("127.0.0.1", "localhost", "::1") else f"interface {host}")
        tls = " (TLS" + (", client certificates required)" if self.options.tls_client_ca else ")") \
            if self.options.tls_cert else ""
        return (f"gRPC {host}:{self.grpc_port}{tls}  HTTP {host}:{self.http_port}  metrics {host}:{self.metrics_port}"
                f"  [{scope}]")

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def admin_headers(self) -> dict[str, str]:
        """Headers that open the restricted APIs (empty without an admin key)."""
        return {ADMIN_HEADER: self.options.admin_key} if self.options.admin_key else {}

    def client_tls(self) -> Any:
        """TLS options for a client of this server on this machine (None without TLS)."""
        if self.options.tls_cert is None:
            return None
        from tuneship.client import TLSOptions

        return TLSOptions(root_certificates=str(self.options.tls_client_ca or self.options.tls_cert))

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
        # "none" runs as explicit mode with every model loaded at start: the same models, and a reload API the
        # stub watcher can use to heal a model (Triton refuses load/unload in none and poll modes).
        mode = "explicit" if o.model_control_mode == "none" and o.heal else o.model_control_mode
        args = [
            f"--model-repository={Path(o.model_repository).resolve()}",
            f"--backend-directory={backend_dir}",
            f"--http-address={o.host}",
            f"--grpc-address={o.host}",
            f"--metrics-address={o.host}",
            f"--grpc-port={self.grpc_port}",
            f"--http-port={self.http_port}",
            f"--metrics-port={self.metrics_port}",
            f"--model-control-mode={mode}",
            "--allow-metrics=true",
            "--allow-cpu-metrics=true",
            "--metrics-config=summary_latencies=true",
            f"--exit-timeout-secs={o.exit_timeout_s}",
            f"--log-verbose={o.log_verbose}",
        ]
        if o.model_control_mode == "poll":
            args.append(f"--repository-poll-secs={o.repository_poll_secs}")
        load = ("*",) if mode != o.model_control_mode else o.load_models
        args.extend(f"--load-model={name}" for name in load)
        if o.tls_cert is not None:
            args += ["--grpc-use-ssl=true", f"--grpc-server-cert={o.tls_cert}", f"--grpc-server-key={o.tls_key}"]
            if o.tls_client_ca is not None:
                args += ["--grpc-use-ssl-mutual=true", f"--grpc-root-cert={o.tls_client_ca}"]
        if o.admin_key:
            # Repository control, configs, statistics, shared memory, tracing and logging need the key; inference,
            # health and metadata stay open. Same header on gRPC and HTTP.
            args.append(f"--grpc-restricted-protocol={RESTRICTED_APIS}:{ADMIN_KEY_NAME}={o.admin_key}")
            args.append(f"--http-restricted-api={RESTRICTED_APIS}:{ADMIN_KEY_NAME}={o.admin_key}")
        args.extend(o.extra_args)
        return args

    def start(self) -> TritonServer:
        """Start the server and wait until it is ready; raise ServerError with Triton's reason if not.

        With `heal` (the default) a watcher thread then follows the Python-backend stubs (deploy/healing.py).
        """
        o = self.options
        if o.tls_cert is not None and o.tls_key is None:
            raise ServerError("TLS needs the server's private key too (--tls-key) next to its certificate")
        for path in (o.tls_cert, o.tls_key, o.tls_client_ca):
            if path is not None and not Path(path).is_file():
                raise ServerError(f"{path}: no such file (TLS)")
        self._launch()
        if o.heal and self.watcher is None:
            self.watcher = StubWatcher(self, self.log).start()
        return self

    def restart(self) -> None:
        """Stop the tritonserver process and start a new one on the same ports (the watcher stays)."""
        self.restarting = True
        try:
            regions = {stub.shm_region for stub in list_stubs(self.pid)} if self.pid is not None else set()
            self._terminate()
            self._cleanup_shared_memory(regions)
            self._launch()
        finally:
            self.restarting = False

    def _launch(self) -> None:
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
        self.exit_code = None
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def is_ready(self) -> bool:
        """Whether the server answers ready on its HTTP health endpoint and no model is known to be broken.

        Triton stays "ready" while a model whose stub died fails every request; the watcher knows better.
        """
        if self.watcher is not None and not self.watcher.healthy:
            return False
        return self._http_ready()

    def _http_ready(self) -> bool:
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
            if all(marker in log for marker in _STARTED) and self._http_ready():
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
        errors = [line.strip() for line in lines if _ERROR_LINE.match(line.strip()) and not _HARMLESS.search(line)]
        if errors:
            return " | ".join(errors[-3:])
        return "\n".join(lines[-10:]) or "no log output"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def exit_reason(self) -> str:
        """Why the server stopped, in words: the signal or exit status first, then Triton's own errors, if any."""
        process = self._process
        code = process.poll() if process is not None else self.exit_code
        said = describe_exit(code)
        log = self.log_text()
        errors = [line.strip() for line in log.splitlines()
                  if _ERROR_LINE.match(line.strip()) and not _HARMLESS.search(line)]
        return f"tritonserver {said}" + (f"; its last errors: {' | '.join(errors[-3:])}" if errors else
                                          "; its log shows no error")

    def _terminate(self) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            offset = self._log_size()
            process.send_signal(signal.SIGINT)
            self._wait_for_shutdown(process, offset, self.options.exit_timeout_s + 10)
        # Stubs share the server's process group: make sure none outlives it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        self.exit_code = process.returncode
        self._process = None

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def _wait_for_shutdown(self, process: subprocess.Popen[bytes], offset: int, timeout_s: float) -> None:
        """Until Triton exits, or until its log shows every model it still had unloaded: it checks for live
        models once a second and then takes a while to exit, so waiting for that costs about 1.5 s a stop for
        nothing (the process group is killed right after; in-flight requests have finished by then, since
        Triton unloads models only after they have)."""
        deadline = time.monotonic() + timeout_s
        try:
            log = open(self.log_path, "rb")  # noqa: SIM115 (read as it grows, closed below)
        except OSError:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=timeout_s)
            return
        with log:
            log.seek(offset)
            text = ""
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    return
                text += log.read().decode("utf-8", errors="replace")  # what Triton wrote since the last look
                first = _LIVE_MODELS.search(text)
                if first is not None and first.group(2) == "0":
                    live = int(first.group(1))
                    if live and text.count("successfully unloaded '") >= live:
                        return
                time.sleep(0.02)

    def _cleanup_shared_memory(self, regions: set[str]) -> None:
        """Remove the /dev/shm regions of this server's stubs: a killed stub (or server) leaves its region, and so
        does a stop that does not wait for Triton's own exit (`_wait_for_shutdown`)."""
        if self.watcher is not None:
            regions |= set(self.watcher.regions)
        removed = remove_shm_regions(regions)
        if removed:
            self.log(f"removed {len(removed)} shared-memory file(s) the stubs left in /dev/shm")

    def stop(self) -> None:
        """Stop gracefully (SIGINT, then SIGKILL after the grace period), stubs and their shared memory
        included; idempotent."""
        # The regions of the stubs still running, collected before they go.
        regions = {stub.shm_region for stub in list_stubs(self.pid)} if self.pid is not None else set()
        if self.watcher is not None:
            self.watcher.stop()
        self._terminate()
        atexit.unregister(self.stop)
        self._cleanup_shared_memory(regions)
        self.watcher = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir / "backends", ignore_errors=True)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
