"""Streams (what generators use) follow the same retry policy, budget and metrics as unary calls; no server."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from tuneship.client import (
    AsyncGenerator,
    AsyncTritonClient,
    ClientMetrics,
    ClientOptions,
    Generator,
    RetryBudget,
    RetryPolicy,
    ServerUnavailableError,
    TritonClient,
)
from tuneship.deploy import free_port


def _options(budget: RetryBudget, attempts: int = 3) -> ClientOptions:
    return ClientOptions(timeout_s=20, retry=RetryPolicy(max_attempts=attempts, initial_backoff_s=0.01,
                                                         max_backoff_s=0.05, budget=budget))


def _unreachable() -> str:
    return f"127.0.0.1:{free_port()}"  # nothing listens here


def test_a_generator_retries_within_the_policy_spending_the_budget_and_counting_each_retry() -> None:
    budget = RetryBudget(max_tokens=10)
    metrics = ClientMetrics(CollectorRegistry())
    with TritonClient(_unreachable(), _options(budget), metrics) as client, \
            pytest.raises(ServerUnavailableError, match="after 3 attempts"):
        Generator(client, "chat").generate("hello", max_tokens=2)
    assert budget.tokens == 8  # two retries, each one token
    sample = metrics.registry.get_sample_value
    assert sample("tuneship_client_retries_total", {"model": "chat", "code": "serverunavailable"}) == 2
    assert sample("tuneship_client_errors_total", {"model": "chat", "code": "serverunavailable"}) == 1
    assert sample("tuneship_client_request_duration_seconds_count",
                  {"model": "chat", "outcome": "serverunavailable"}) == 1
    assert sample("tuneship_client_requests_in_flight", {"model": "chat"}) == 0


def test_an_empty_retry_budget_stops_a_streams_retries() -> None:
    budget = RetryBudget(max_tokens=1)
    metrics = ClientMetrics(CollectorRegistry())
    with TritonClient(_unreachable(), _options(budget, attempts=5), metrics) as client:
        with pytest.raises(ServerUnavailableError, match="after 2 attempts"):
            list(client.stream_infer("chat", {"text_input": np.array([b"hi"], dtype=np.object_)}, validate=False))
        with pytest.raises(ServerUnavailableError) as second:
            list(client.stream_infer("chat", {"text_input": np.array([b"hi"], dtype=np.object_)}, validate=False))
    assert "attempts" not in str(second.value)  # no token left: not retried at all
    assert metrics.registry.get_sample_value("tuneship_client_retries_total",
                                             {"model": "chat", "code": "serverunavailable"}) == 1


def test_the_async_generator_retries_and_records_the_same_metrics() -> None:
    budget = RetryBudget(max_tokens=10)
    metrics = ClientMetrics(CollectorRegistry())

    async def generate() -> None:
        async with AsyncTritonClient(_unreachable(), _options(budget), metrics) as client:
            await AsyncGenerator(client, "chat").generate("hello", max_tokens=2)

    with pytest.raises(ServerUnavailableError, match="after 3 attempts"):
        asyncio.run(generate())
    assert budget.tokens == 8
    sample = metrics.registry.get_sample_value
    assert sample("tuneship_client_retries_total", {"model": "chat", "code": "serverunavailable"}) == 2
    assert sample("tuneship_client_request_duration_seconds_count",
                  {"model": "chat", "outcome": "serverunavailable"}) == 1
    assert sample("tuneship_client_requests_in_flight", {"model": "chat"}) == 0
