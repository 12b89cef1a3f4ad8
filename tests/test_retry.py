"""Retry policy, budget and error mapping (no server)."""

from __future__ import annotations

import random

import pytest

from client.errors import (
    DeadlineExceededError,
    InvalidInputError,
    ModelNotReadyError,
    ResourceExhaustedError,
    ServerUnavailableError,
    from_triton_exception,
)
from client.retry import RetryBudget, RetryPolicy


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
