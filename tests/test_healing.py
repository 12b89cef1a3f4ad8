"""A broken component is noticed and healed; the server is closed by default; stopping tells the truth and
leaves nothing behind. Against the real embedded Triton server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from waiting import process_gone, wait_for

from tuneship.client import ClientOptions, RetryPolicy, TextClassifier, TritonClient, TritonError
from tuneship.deploy import ServeOptions, TritonServer, free_port, scrape_metrics
from tuneship.deploy.stubs import SHM_DIR, list_stubs

pytestmark = pytest.mark.integration

TEXTS = ["a superb and moving film", "dull, tedious and lifeless", "the cast was charming"]


def _options(repository: Path, **more: object) -> ServeOptions:
    return ServeOptions(model_repository=repository, grpc_port=0, http_port=0, metrics_port=0, **more)  # type: ignore[arg-type]


def _wait_for_stub(server: TritonServer, model: str, timeout_s: float = 30) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert server.pid is not None
        for stub in list_stubs(server.pid):
            if stub.model == model:
                return stub.pid
        time.sleep(0.2)
    raise AssertionError(f"no stub for {model}")


def test_a_killed_stub_is_noticed_and_healed_under_load(tiny_repository: Path) -> None:
    events: list[str] = []
    with TritonServer(_options(tiny_repository), log=events.append) as server:
        deadline_s = 3.0
        outcomes: list[tuple[float, float, bool]] = []  # (finished at, duration, ok)
        stop = threading.Event()

        def load() -> None:
            options = ClientOptions(timeout_s=deadline_s, retry=RetryPolicy(max_attempts=1))
            with TritonClient(server.grpc_url, options) as client:
                classifier = TextClassifier(client, "tiny", concurrency=1)
                expected = [p.label for p in classifier.classify(TEXTS)]
                while not stop.is_set():
                    started = time.monotonic()
                    try:
                        ok = [p.label for p in classifier.classify(TEXTS)] == expected
                    except TritonError:
                        ok = False
                    outcomes.append((time.monotonic(), time.monotonic() - started, ok))
                    time.sleep(0.02)

        callers = [threading.Thread(target=load) for _ in range(2)]
        for caller in callers:
            caller.start()
        wait_for(lambda: sum(ok for _, _, ok in outcomes) >= 4, "correct answers before any kill")
        for model in ("tiny_tokenizer", "tiny_model"):
            victim = _wait_for_stub(server, model)
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            while time.monotonic() - killed_at < 60:
                answered = [t for t, _, ok in outcomes if ok and t > killed_at + 0.2]
                failed = [t for t, _, ok in outcomes if not ok and t > killed_at]
                # Healed: correct answers again, after the failures the dead stub caused.
                if failed and answered and answered[-1] > failed[-1] + 1.0:
                    break
                time.sleep(0.2)
            recovered = [t for t, _, ok in outcomes if ok and t > killed_at + 0.2]
            failures_after = [t for t, _, ok in outcomes if not ok and t > killed_at]
            assert failures_after, f"killing {model}'s stub caused no failure: the test did not test anything"
            # How fast is the machine's business: healed (correct answers after the last failure) is the rule.
            assert recovered and recovered[-1] > failures_after[-1], f"{model}: not healed after the kill: {events}"
        stop.set()
        for caller in callers:
            caller.join(timeout=30)
        assert all(duration <= deadline_s + 1.0 for _, duration, _ in outcomes), "a request outlived its deadline"
        assert sum(1 for e in events if "died" in e) == 2, events
        assert sum(1 for e in events if "answering again" in e) == 2, events
        # Triton itself counted the requests that failed while the stub was dead.
        metrics = scrape_metrics(server.metrics_url)
        assert metrics.model("tiny_tokenizer").request_failure > 0
        assert metrics.model("tiny_model").request_failure + metrics.model("tiny").request_failure > 0


def test_stop_removes_the_shared_memory_of_killed_stubs(tiny_repository: Path) -> None:
    server = TritonServer(_options(tiny_repository, heal=False), log=lambda message: None)
    with server:
        victim = _wait_for_stub(server, "tiny_postprocess")
        assert server.pid is not None
        regions = {stub.shm_region for stub in list_stubs(server.pid)}
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: process_gone(victim), "the killed stub gone")
    assert regions
    left = [entry.name for entry in SHM_DIR.iterdir() if any(entry.name.startswith(r) for r in regions)]
    assert not left, left


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on `port`, from /proc/net/tcp (and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_the_server_listens_on_loopback_unless_told_otherwise(tiny_repository: Path) -> None:
    with TritonServer(_options(tiny_repository, heal=False)) as server:
        # 127.0.0.1, as IPv4 or as IPv4-mapped IPv6 (gRPC listens on a tcp6 socket), and nothing else.
        loopback = {"0100007F", "0000000000000000FFFF00000100007F"}
        for port in (server.grpc_port, server.http_port, server.metrics_port):
            assert _listening_addresses(port), port
            assert _listening_addresses(port) <= loopback, (port, _listening_addresses(port))
        assert "this machine only" in server.listening()
    with TritonServer(_options(tiny_repository, heal=False, host="0.0.0.0")) as server:
        assert _listening_addresses(server.grpc_port) & {"00000000", "00000000000000000000000000000000"}
        assert "every interface" in server.listening()
        with TritonClient(server.grpc_url) as client:  # reached on loopback
            assert client.is_model_ready("tiny")


def test_the_admin_key_restricts_every_category_triton_can(tiny_repository: Path) -> None:
    from tuneship.client import ADMIN_HEADER, PermissionDeniedError

    with TritonServer(_options(tiny_repository, heal=False, admin_key="s3cret")) as server:
        with TritonClient(server.grpc_url, ClientOptions(timeout_s=10)) as anonymous:
            for call, args in (("get_inference_statistics", ()), ("get_model_config", ("tiny",)),
                               ("get_model_repository_index", ()), ("unload_model", ("tiny",))):
                with pytest.raises(PermissionDeniedError):
                    getattr(anonymous, call)(*args)
            with pytest.raises(PermissionDeniedError):
                anonymous._call("get_system_shared_memory_status")
            with pytest.raises(PermissionDeniedError):
                anonymous._call("get_trace_settings")
            with pytest.raises(PermissionDeniedError):
                anonymous._call("get_log_settings")
            assert anonymous.is_server_ready() and anonymous.get_model_metadata("tiny")["name"] == "tiny"
            assert len(TextClassifier(anonymous, "tiny").classify(TEXTS)) == 3  # inference stays open
        with TritonClient(server.grpc_url, ClientOptions(timeout_s=10, headers={ADMIN_HEADER: "s3cret"})) as admin:
            assert admin.get_inference_statistics()["model_stats"]


def test_serve_names_the_real_cause_when_triton_dies(tiny_repository: Path) -> None:
    command = [sys.executable, "-m", "tuneship", "serve", "--model-repository", str(tiny_repository),
               "--grpc-port", str(free_port()), "--http-port", str(free_port()), "--metrics-port", str(free_port())]
    serve = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert serve.stdout is not None
        banner = ""
        deadline = time.monotonic() + 120
        while "Triton ready" not in banner and time.monotonic() < deadline:
            banner += serve.stdout.readline()
        assert "this machine only" in banner, banner
        triton = [int(p) for p in subprocess.run(["pgrep", "-P", str(serve.pid), "tritonserver"],
                                                 capture_output=True, text=True).stdout.split()]
        assert triton, "no tritonserver child"
        os.kill(triton[0], signal.SIGKILL)
        _, err = serve.communicate(timeout=60)
    finally:
        if serve.poll() is None:
            serve.kill()
    assert serve.returncode == 1
    assert "Triton stopped unexpectedly: tritonserver killed by SIGKILL" in err, err
    assert "CUDA" not in err and "Traceback" not in err


def test_health_runs_a_real_inference(tiny_repository: Path) -> None:
    with TritonServer(_options(tiny_repository, heal=False)) as server:
        healthy = subprocess.run([sys.executable, "-m", "tuneship", "health", "--url", server.grpc_url,
                                  "--model", "tiny"], capture_output=True, text=True, timeout=60)
        assert healthy.returncode == 0 and "healthy: tiny" in healthy.stdout, healthy.stderr
        victim = _wait_for_stub(server, "tiny_tokenizer")
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: process_gone(victim), "the killed stub gone")
        broken = subprocess.run([sys.executable, "-m", "tuneship", "health", "--url", server.grpc_url,
                                 "--model", "tiny"], capture_output=True, text=True, timeout=60)
        assert broken.returncode == 1 and "unhealthy" in broken.stderr and "not healthy" in broken.stderr
        # Triton's own endpoints still say all is well: why the probe has to infer.
        with TritonClient(server.grpc_url) as client:
            assert client.is_server_ready() and client.is_model_ready("tiny_tokenizer")

