"""The typed client against the real embedded Triton server."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from tuneship.client import (
    AsyncTextClassifier,
    AsyncTritonClient,
    ClientMetrics,
    ClientOptions,
    DeadlineExceededError,
    InvalidInputError,
    ModelNotReadyError,
    RetryBudget,
    RetryPolicy,
    ServerUnavailableError,
    TextClassifier,
    TLSOptions,
    TritonClient,
)
from tuneship.deploy import ServeOptions, TritonServer, free_port

TEXTS = ["a superb and moving film", "dull, tedious and lifeless", "the cast was charming", "bland and clumsy",
         "gripping from start to finish", "an awful, boring mess"]


@pytest.fixture(scope="module")
def repository(tiny_repository: Path) -> Path:
    return tiny_repository


@pytest.fixture(scope="module")
def server(tiny_server: TritonServer) -> TritonServer:
    return tiny_server  # the session's shared server on the `tiny` repository


def _fast_retries(attempts: int = 3) -> ClientOptions:
    return ClientOptions(timeout_s=20, retry=RetryPolicy(max_attempts=attempts, initial_backoff_s=0.05,
                                                         max_backoff_s=0.2, budget=RetryBudget(100)))


def test_sync_and_async_clients_agree(server: TritonServer) -> None:
    with TritonClient(server.grpc_url) as client:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("tiny")
        assert client.get_server_metadata()["name"] == "triton"
        assert [i["name"] for i in client.get_model_metadata("tiny")["inputs"]] == ["TEXT"]
        assert {m["name"] for m in client.get_model_repository_index()} >= {"tiny", "tiny_model"}
        sync = TextClassifier(client, "tiny", batch_size=4, concurrency=2).classify(TEXTS)
        raw = client.infer("tiny", {"TEXT": np.array([[b"a superb film"]], dtype=np.object_)})
        assert raw.model == "tiny" and raw.version == "1"
        assert raw["PROBABILITIES"].shape == (1, 2)
        assert raw.strings("LABEL")[0] in ("negative", "positive")

    async def run() -> list[object]:
        async with AsyncTritonClient(server.grpc_url) as aclient:
            assert await aclient.is_model_ready("tiny")
            return list(await AsyncTextClassifier(aclient, "tiny", batch_size=4, concurrency=2).classify(TEXTS))

    assert asyncio.run(run()) == sync
    assert len(sync) == len(TEXTS)
    assert all(abs(sum(p.scores.values()) - 1) < 1e-5 and p.score == max(p.scores.values()) for p in sync)


def _requests_seen(client: TritonClient) -> int:
    stats = client.get_inference_statistics("tiny")["model_stats"][0]["inference_stats"]
    return int(stats.get("success", {}).get("count", 0)) + int(stats.get("fail", {}).get("count", 0))


@pytest.mark.parametrize(("inputs", "message"), [
    ({"TXT": np.array([[b"x"]], dtype=np.object_)}, "model 'tiny' has no input 'TXT' (inputs: TEXT)"),
    ({"TEXT": np.array([[1.0]], dtype=np.float32)}, "input 'TEXT' of model 'tiny' must be BYTES, got FP32"),
    ({"TEXT": np.array([b"x"], dtype=np.object_)}, "input 'TEXT' of model 'tiny' must have shape [-1, 1]"),
    ({"TEXT": np.array([[b"x", b"y"]], dtype=np.object_)}, "dimension 1 must be 1, got 2"),
    ({"TEXT": np.array([[b"x"]] * 65, dtype=np.object_)}, "batch of 65 is over the model's max_batch_size 64"),
])
def test_bad_inputs_are_refused_before_sending(server: TritonServer, inputs: dict[str, np.ndarray],
                                               message: str) -> None:
    metrics = ClientMetrics(CollectorRegistry())
    with TritonClient(server.grpc_url, metrics=metrics) as client:
        before = _requests_seen(client)
        with pytest.raises(InvalidInputError) as caught:
            client.infer("tiny", inputs)
        after = _requests_seen(client)
    assert message in str(caught.value)
    assert before == after, "the request must not reach the server"
    # Counted as a call that failed before it was sent, and not left in flight.
    assert metrics.registry.get_sample_value("tuneship_client_errors_total",
                                             {"model": "tiny", "code": "invalidinput"}) == 1
    assert metrics.registry.get_sample_value("tuneship_client_requests_in_flight", {"model": "tiny"}) == 0


def test_unknown_model_is_model_not_ready(server: TritonServer) -> None:
    with TritonClient(server.grpc_url) as client, pytest.raises(ModelNotReadyError):
        client.infer("nope", {"TEXT": np.array([[b"x"]], dtype=np.object_)})


def test_deadline_exceeded_is_typed_and_not_retried(server: TritonServer) -> None:
    metrics = ClientMetrics(CollectorRegistry())
    with TritonClient(server.grpc_url, _fast_retries(), metrics) as client:
        client.infer("tiny", {"TEXT": np.array([[b"warm up"]], dtype=np.object_)})
        long_texts = np.array([[("word " * 200).encode()]] * 64, dtype=np.object_)
        with pytest.raises(DeadlineExceededError):
            client.infer("tiny", {"TEXT": long_texts}, timeout_s=0.002)
    assert metrics.registry.get_sample_value("tuneship_client_errors_total",
                                             {"model": "tiny", "code": "deadlineexceeded"}) == 1
    assert metrics.registry.get_sample_value("tuneship_client_retries_total",
                                             {"model": "tiny", "code": "deadlineexceeded"}) is None


def test_metrics_count_what_was_sent(server: TritonServer) -> None:
    registry = CollectorRegistry()
    metrics = ClientMetrics(registry)
    with TritonClient(server.grpc_url, metrics=metrics) as client:
        for text in TEXTS:
            client.infer("tiny", {"TEXT": np.array([[text.encode()]], dtype=np.object_)})
        with pytest.raises(ModelNotReadyError):
            client.infer("missing", {"TEXT": np.array([[b"x"]], dtype=np.object_)}, validate=False)
    ok = {"model": "tiny", "outcome": "ok"}
    assert registry.get_sample_value("tuneship_client_request_duration_seconds_count", ok) == len(TEXTS)
    assert registry.get_sample_value("tuneship_client_request_duration_seconds_sum", ok) > 0
    assert registry.get_sample_value("tuneship_client_request_duration_seconds_bucket", {**ok, "le": "10.0"}) == 6
    assert registry.get_sample_value("tuneship_client_errors_total", {"model": "missing", "code": "modelnotready"}) == 1
    assert registry.get_sample_value("tuneship_client_requests_in_flight", {"model": "tiny"}) == 0


def test_stopped_server_gives_a_clear_error_after_the_retry_budget() -> None:
    metrics = ClientMetrics(CollectorRegistry())
    url = f"127.0.0.1:{free_port()}"  # nothing listens here
    with TritonClient(url, _fast_retries(attempts=3), metrics) as client:
        started = time.monotonic()
        with pytest.raises(ServerUnavailableError, match=r"after 3 attempts"):
            client.infer("tiny", {"TEXT": np.array([[b"x"]], dtype=np.object_)}, validate=False)
        assert time.monotonic() - started < 10
    assert metrics.registry.get_sample_value("tuneship_client_retries_total",
                                             {"model": "tiny", "code": "serverunavailable"}) == 2


def test_retry_budget_stops_retries_during_an_outage() -> None:
    options = ClientOptions(timeout_s=10, retry=RetryPolicy(max_attempts=5, initial_backoff_s=0.01,
                                                            budget=RetryBudget(max_tokens=3)))
    with TritonClient(f"127.0.0.1:{free_port()}", options) as client:
        for _ in range(3):
            with pytest.raises(ServerUnavailableError):
                client.infer("tiny", {"TEXT": np.array([[b"x"]], dtype=np.object_)}, validate=False)
        assert client.budget.tokens < 1


@pytest.mark.integration  # starts its own servers
def test_server_restart_with_requests_in_flight_loses_nothing(repository: Path) -> None:
    ports = {"grpc_port": free_port(), "http_port": free_port(), "metrics_port": free_port()}
    options = ServeOptions(model_repository=repository, exit_timeout_s=5, **ports)  # type: ignore[arg-type]
    texts = [f"{TEXTS[i % len(TEXTS)]} number {i}" for i in range(240)]
    # While Triton shuts down it unloads models before closing its port ("no available versions"):
    # a client that rides through restarts retries that too.
    client_options = ClientOptions(timeout_s=120, retry=RetryPolicy(max_attempts=1000, initial_backoff_s=0.1,
                                                                    max_backoff_s=0.5, retry_model_not_ready=True,
                                                                    budget=RetryBudget(1000)))
    first = TritonServer(options).start()
    try:
        with TritonClient(first.grpc_url, client_options) as client:
            classifier = TextClassifier(client, "tiny", batch_size=2, concurrency=4)
            expected = classifier.classify(texts)
            restarted: list[TritonServer] = []
            problems: list[BaseException] = []

            def restart() -> None:
                try:
                    time.sleep(0.3)
                    first.stop()
                    restarted.append(TritonServer(options).start())
                except BaseException as error:  # surfaced below; a thread's exception is otherwise lost
                    problems.append(error)

            thread = threading.Thread(target=restart)
            thread.start()
            try:
                during = classifier.classify(texts)
            except Exception as error:
                thread.join()
                raise AssertionError(f"requests failed ({error}); restart problems: {problems}") from error
            thread.join()
            assert not problems, f"restart failed: {problems}"
        assert restarted and restarted[0].running, "the server was not restarted during the test"
        assert len(during) == len(texts)
        assert [p.label for p in during] == [p.label for p in expected]
        np.testing.assert_allclose([p.score for p in during], [p.score for p in expected], atol=1e-5)
    finally:
        first.stop()
        for server in locals().get("restarted", []):
            server.stop()


def _make_certificates(folder: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    key, cert = folder / "server.key", folder / "server.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return key, cert


@pytest.mark.integration  # starts its own servers
def test_tls(repository: Path, tmp_path: Path) -> None:
    key, cert = _make_certificates(tmp_path)
    options = ServeOptions(model_repository=repository, grpc_port=0, http_port=0, metrics_port=0, heal=False,
                           tls_cert=cert, tls_key=key)
    with TritonServer(options) as server:
        url = f"localhost:{server.grpc_port}"
        secure = ClientOptions(tls=TLSOptions(root_certificates=str(cert)), timeout_s=10)
        with TritonClient(url, secure) as client:
            predictions = TextClassifier(client, "tiny").classify(TEXTS[:2])
        assert len(predictions) == 2
        plain = ClientOptions(timeout_s=5, retry=RetryPolicy(max_attempts=1))
        with TritonClient(url, plain) as client, pytest.raises(ServerUnavailableError):
            client.infer("tiny", {"TEXT": np.array([[b"x"]], dtype=np.object_)}, validate=False)


@pytest.mark.integration  # starts its own servers
def test_mutual_tls_refuses_clients_without_a_certificate(repository: Path, tmp_path: Path) -> None:
    key, cert = _make_certificates(tmp_path)  # self-signed: it is also the CA that signed itself
    options = ServeOptions(model_repository=repository, grpc_port=0, http_port=0, metrics_port=0, heal=False,
                           tls_cert=cert, tls_key=key, tls_client_ca=cert)
    with TritonServer(options) as server:
        url = f"localhost:{server.grpc_port}"
        assert "client certificates required" in server.listening()
        identified = ClientOptions(timeout_s=10, tls=TLSOptions(root_certificates=str(cert), private_key=str(key),
                                                                certificate_chain=str(cert)))
        with TritonClient(url, identified) as client:
            assert len(TextClassifier(client, "tiny").classify(TEXTS[:2])) == 2
        anonymous = ClientOptions(timeout_s=5, tls=TLSOptions(root_certificates=str(cert)),
                                  retry=RetryPolicy(max_attempts=1))
        with TritonClient(url, anonymous) as client, pytest.raises(ServerUnavailableError):
            client.infer("tiny", {"TEXT": np.array([[b"x"]], dtype=np.object_)}, validate=False)
