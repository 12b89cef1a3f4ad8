"""The client without a server: retry policy, budget and error mapping; refusals and the metrics of calls that
fail before anything is sent."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry

from tuneship.client import ClientMetrics, ClientOptions, TextClassifier
from tuneship.client.errors import (
    DeadlineExceededError,
    InvalidInputError,
    ModelNotReadyError,
    ResourceExhaustedError,
    ServerUnavailableError,
    from_triton_exception,
)
from tuneship.client.retry import RetryBudget, RetryPolicy
from tuneship.deploy import free_port


class _Raw(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self._status, self._message = status, message

    def status(self) -> str:
        return self._status

    def message(self) -> str:
        return self._message


@pytest.mark.parametrize(("status", "cls"), [
    ("StatusCode.UNAVAILABLE", ServerUnavailableError),
    ("StatusCode.DEADLINE_EXCEEDED", DeadlineExceededError),
    ("StatusCode.INVALID_ARGUMENT", InvalidInputError),
    ("StatusCode.NOT_FOUND", ModelNotReadyError),
    ("StatusCode.RESOURCE_EXHAUSTED", ResourceExhaustedError),
])
def test_status_codes_map_to_typed_errors_keeping_the_message(status: str, cls: type) -> None:
    error = from_triton_exception(_Raw(status, "Triton said so"))
    assert isinstance(error, cls)
    assert str(error) == "Triton said so" and error.status == status


def test_only_unavailable_is_retried_by_default() -> None:
    policy = RetryPolicy()
    assert policy.retryable(ServerUnavailableError("down"))
    assert not policy.retryable(InvalidInputError("bad"))
    assert not policy.retryable(DeadlineExceededError("late"))
    assert not policy.retryable(ResourceExhaustedError("busy"))
    assert RetryPolicy(retry_resource_exhausted=True).retryable(ResourceExhaustedError("busy"))


def test_backoff_grows_exponentially_within_jitter_and_cap() -> None:
    policy = RetryPolicy(initial_backoff_s=0.1, multiplier=2, max_backoff_s=1.0, jitter=0.5)
    rng = random.Random(0)
    for retry, base in ((1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)):
        for _ in range(50):
            assert base * 0.5 <= policy.backoff_s(retry, rng) <= base * 1.5
    assert RetryPolicy(jitter=0).backoff_s(2) == pytest.approx(0.2)


def test_budget_is_spent_by_retries_and_refilled_by_successes() -> None:
    budget = RetryBudget(max_tokens=2, ratio=0.5)
    assert budget.try_spend() and budget.try_spend()
    assert not budget.try_spend()
    budget.record_success()
    budget.record_success()
    assert budget.try_spend()
    for _ in range(10):
        budget.record_success()
    assert budget.tokens == 2


def test_the_client_package_imports_nothing_heavy() -> None:
    import subprocess
    import sys

    code = ("import sys, client, client.bench, client.cli; "
            "heavy = [m for m in ('torch', 'transformers', 'peft', 'onnxruntime', 'sklearn') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"client imported {result.stdout.strip()}"


def test_a_missed_deadline_names_the_error_the_last_attempt_got() -> None:
    import time

    from tuneship.client._calls import CallPlan

    plan = CallPlan("tiny", RetryPolicy(max_attempts=10, initial_backoff_s=0.01), RetryBudget(10), timeout_s=0.05,
                    metrics=None)
    plan.start_attempt()
    assert plan.retry_delay(ServerUnavailableError("failed to connect to all addresses")) is not None
    time.sleep(0.06)
    with pytest.raises(DeadlineExceededError,
                       match=r"deadline after 1 attempt\(s\); the last attempt failed with: failed to connect"):
        plan.start_attempt()


def test_channel_arguments_keep_keepalive_with_a_message_limit_and_bound_reconnect_backoff() -> None:
    from tuneship.client.options import ClientOptions

    args = dict(ClientOptions(max_message_bytes=1 << 20, keepalive_time_ms=5000).grpc_kwargs()["channel_args"])
    assert args["grpc.max_send_message_length"] == args["grpc.max_receive_message_length"] == 1 << 20
    assert args["grpc.keepalive_time_ms"] == 5000 and args["grpc.keepalive_permit_without_calls"] is True
    assert args["grpc.max_reconnect_backoff_ms"] == 2000
    assert args["grpc.initial_reconnect_backoff_ms"] <= args["grpc.max_reconnect_backoff_ms"]
    defaults = dict(ClientOptions().grpc_kwargs()["channel_args"])
    assert defaults["grpc.max_receive_message_length"] == 2**31 - 1  # tritonclient's own default, kept


@pytest.mark.parametrize("size", [0, -1, -5, 2.5, True])
def test_text_classifier_refuses_a_batch_size_that_is_not_positive(size: object) -> None:
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        TextClassifier(None, batch_size=size)  # type: ignore[arg-type]


def test_client_metrics_count_calls_that_fail_before_anything_is_sent() -> None:
    from tuneship.client import TritonClient

    metrics = ClientMetrics(CollectorRegistry())
    options = ClientOptions(timeout_s=2.0, retry=RetryPolicy(max_attempts=1))
    with TritonClient(f"127.0.0.1:{free_port()}", options, metrics) as client, \
            pytest.raises(ServerUnavailableError):
        client.infer("sentiment", {"TEXT": __import__("numpy").array([[b"x"]], dtype=object)})
    registry = metrics.registry
    assert registry.get_sample_value("tuneship_client_errors_total",
                                     {"model": "sentiment", "code": "serverunavailable"}) == 1
    assert registry.get_sample_value("tuneship_client_request_duration_seconds_count",
                                     {"model": "sentiment", "outcome": "serverunavailable"}) == 1




def test_a_streams_refusal_is_typed_by_the_status_its_message_starts_with() -> None:
    """gRPC streams carry an error's message only; the generator starts it with the status."""
    from tritonclient.utils import InferenceServerException

    from tuneship.client.errors import (
        InvalidInputError,
        ResourceExhaustedError,
        ServerError,
        ServerUnavailableError,
        from_triton_exception,
    )

    def typed(message: str) -> type:
        return type(from_triton_exception(InferenceServerException(msg=message)))

    assert typed("invalid argument: guided_regex: cannot be applied") is InvalidInputError
    assert typed("resource exhausted: 16 requests wait (max_queue 16)") is ResourceExhaustedError
    assert typed("unavailable: the generator is shutting down") is ServerUnavailableError
    assert typed("generation failed: invalid argument: deep inside") is ServerError  # only a leading status counts
