"""The real embedded Triton server: inference, batching, metrics, and clear start-up failures."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from lanes import costs
from onnx_models import write_linear_model
from waiting import wait_for

from tuneship.deploy import ServeOptions, ServerError, TritonServer, free_port, scrape_metrics

pytestmark = pytest.mark.integration


def _options(repository: Path, **overrides: object) -> ServeOptions:
    values: dict[str, object] = {"model_repository": repository, "grpc_port": 0, "http_port": 0,
                                 "metrics_port": 0, "ready_timeout_s": 90}
    values.update(overrides)
    return ServeOptions(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
@costs("integration")
def linear_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    repository = tmp_path_factory.mktemp("repo")
    rng = np.random.default_rng(0)
    weight, bias = rng.normal(size=(4, 3)), rng.normal(size=3)
    # A long queue delay makes the dynamic batcher merge concurrent requests reliably on 2 cores.
    write_linear_model(repository, "linear", weight, bias, queue_delay_us=200_000)
    with TritonServer(_options(repository)) as server:
        yield server, weight, bias


def _infer(url: str, x: np.ndarray) -> np.ndarray:
    client = grpcclient.InferenceServerClient(url)
    tensor = grpcclient.InferInput("X", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x.astype(np.float32))
    try:
        return client.infer("linear", [tensor]).as_numpy("Y")
    finally:
        client.close()


def test_grpc_inference_returns_the_model_output(linear_server) -> None:  # type: ignore[no-untyped-def]
    server, weight, bias = linear_server
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    y = _infer(server.grpc_url, x)
    np.testing.assert_allclose(y, x @ weight + bias, rtol=1e-5, atol=1e-5)


def test_concurrent_requests_are_batched_and_counted(linear_server) -> None:  # type: ignore[no-untyped-def]
    server, weight, bias = linear_server
    client = grpcclient.InferenceServerClient(server.grpc_url)
    before = client.get_inference_statistics("linear", as_json=True)["model_stats"][0]
    metrics_before = scrape_metrics(server.metrics_url).models.get("linear")
    inputs = [np.full((1, 4), i, dtype=np.float32) for i in range(16)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        outputs = list(pool.map(lambda x: _infer(server.grpc_url, x), inputs))
    for x, y in zip(inputs, outputs, strict=True):
        np.testing.assert_allclose(y, x @ weight + bias, rtol=1e-5, atol=1e-5)
    after = client.get_inference_statistics("linear", as_json=True)["model_stats"][0]
    inferences = int(after.get("inference_count", 0)) - int(before.get("inference_count", 0))
    executions = int(after.get("execution_count", 0)) - int(before.get("execution_count", 0))
    assert inferences == 16
    assert executions < inferences, f"no batching: {executions} executions for {inferences} inferences"
    metrics_after = scrape_metrics(server.metrics_url).model("linear")
    done_before = metrics_before.request_success if metrics_before else 0
    assert metrics_after.request_success - done_before == 16
    assert metrics_after.inference_count >= 16
    client.close()


def test_model_that_cannot_load_names_the_model(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    write_linear_model(tmp_path, "broken_model", rng.normal(size=(4, 3)), rng.normal(size=3))
    (tmp_path / "broken_model" / "1" / "model.onnx").write_bytes(b"this is not an onnx file")
    with pytest.raises(ServerError) as caught:
        TritonServer(_options(tmp_path)).start()
    message = str(caught.value)
    assert "broken_model" in message
    assert "failed to load" in message


def test_second_server_on_a_taken_port_gives_a_clear_error(linear_server) -> None:  # type: ignore[no-untyped-def]
    server, _, _ = linear_server
    repository = Path(server.options.model_repository)
    second = TritonServer(_options(repository, grpc_port=server.grpc_port))
    with pytest.raises(ServerError) as caught:
        second.start()
    assert str(server.grpc_port) in str(caught.value)
    assert "already in use" in str(caught.value)
    assert "--grpc-port" in str(caught.value)
    assert not second.running
    # The first server is unharmed.
    assert server.is_ready()


def test_missing_repository_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ServerError, match="does not exist"):
        TritonServer(_options(tmp_path / "nope")).start()


def test_a_server_started_by_a_worker_thread_outlives_the_thread(tmp_path: Path) -> None:
    """Linux's parent-death signal follows the starting thread: a restart done in a thread must not die with it."""
    import threading

    rng = np.random.default_rng(0)
    write_linear_model(tmp_path, "linear", rng.normal(size=(4, 3)), rng.normal(size=3))
    server = TritonServer(_options(tmp_path))
    thread = threading.Thread(target=server.start)
    thread.start()
    thread.join()
    try:
        time.sleep(1.0)
        assert server.running, f"the server died with its starting thread: {server.log_text()[-300:]}"
        assert server.is_ready()
    finally:
        server.stop()
    assert not server.running


def test_stop_leaves_no_processes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    write_linear_model(tmp_path, "linear", rng.normal(size=(4, 3)), rng.normal(size=3))
    server = TritonServer(_options(tmp_path))
    with server:
        pid = server._process.pid if server._process else -1
        port = server.http_port
    assert not server.running
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))  # the stopped server gave its port back


def test_metrics_include_cpu_utilisation(linear_server) -> None:  # type: ignore[no-untyped-def]
    import urllib.request

    server, _, _ = linear_server
    with urllib.request.urlopen(server.metrics_url, timeout=5) as response:
        text = response.read().decode()
    assert "nv_cpu_utilization" in text
    assert "nv_inference_request_duration_us" in text


def _processes_mentioning(marker: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in command:
            found.append(command)
    return found


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_serve_command_stops_cleanly_on_signals(tmp_path: Path, signal_name: str) -> None:
    import signal
    import subprocess
    import sys
    import time

    rng = np.random.default_rng(0)
    repository = tmp_path / "repository-under-test"
    write_linear_model(repository, "linear", rng.normal(size=(4, 3)), rng.normal(size=3))
    ports = [str(free_port()) for _ in range(4)]
    process = subprocess.Popen(
        [sys.executable, "-m", "tuneship", "serve", "--model-repository", str(repository),
         "--grpc-port", ports[0], "--http-port", ports[1], "--metrics-port", ports[2], "--openai-port", ports[3],
         "--max-body-bytes", "200"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert process.stdout is not None
    try:
        deadline = time.monotonic() + 90
        lines = []
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if line.startswith("OpenAI-compatible API") or not line:
                break
        assert any(line.startswith("Triton ready") for line in lines), "".join(lines)
        assert _processes_mentioning(str(repository)), "the server and its stub should be running"
        # The OpenAI-compatible API runs beside it, healthy while Triton is; the linear model is no generator.
        api = f"http://127.0.0.1:{ports[3]}"
        assert urllib.request.urlopen(f"{api}/health", timeout=10).status == 200
        assert json.loads(urllib.request.urlopen(f"{api}/v1/models", timeout=10).read())["data"] == []
        # The API's own options reach it through serve: a body over --max-body-bytes is refused.
        large = urllib.request.Request(f"{api}/v1/completions", data=json.dumps(
            {"model": "linear", "prompt": "x" * 400}).encode(), headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(large, timeout=10)
        assert refused.value.code == 413
        process.send_signal(getattr(signal, signal_name))
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:  # a failed assertion must not leave a server behind
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert "stopped" in output
    wait_for(lambda: _processes_mentioning(str(repository)) == [], "no process left", timeout_s=10)
