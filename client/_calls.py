"""The retry-and-deadline bookkeeping of one call, shared by the sync and asyncio clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient

from tuneship.client.errors import DeadlineExceededError, ModelNotReadyError, ServerUnavailableError, TritonError
from tuneship.client.metrics import ClientMetrics
from tuneship.client.options import ClientOptions
from tuneship.client.retry import RetryBudget, RetryPolicy
from tuneship.client.validation import triton_datatype
from tuneship.urls import grpc_target


class ClientState:
    """What the sync and asyncio clients hold alike: options, metrics, the retry budget and cached metadata."""

    def __init__(self, url: str, options: ClientOptions | None, metrics: ClientMetrics | None,
                 timeout_s: float | None) -> None:
        self.url = grpc_target(url)
        self.options = options or ClientOptions()
        if timeout_s is not None:
            self.options = replace(self.options, timeout_s=timeout_s)
        self.metrics = metrics
        self.budget = self.options.retry.budget or RetryBudget()
        self._metadata: dict[tuple[str, str], tuple[dict[str, Any], int]] = {}

    def _forget(self, model: str) -> None:
        self._metadata = {k: v for k, v in self._metadata.items() if k[0] != model}

    def _not_ready(self, model: str | None, timeout_s: float, reached: bool, server_ready: bool) -> TritonError:
        """The error of a readiness wait that ran out: unreachable, server not ready, or model not ready."""
        if not reached:
            return ServerUnavailableError(f"Triton at {self.url} was unreachable for {timeout_s:g}s")
        if not server_ready or model is None:
            return ServerUnavailableError(f"Triton at {self.url} answered but was not ready within {timeout_s:g}s")
        return ModelNotReadyError(f"model {model!r} on Triton at {self.url} was not ready within {timeout_s:g}s")


class CallPlan:
    """Tracks attempts and the deadline of one logical call; says whether and when to retry."""

    def __init__(self, model: str, policy: RetryPolicy, budget: RetryBudget, timeout_s: float | None,
                 metrics: ClientMetrics | None) -> None:
        self.model = model
        self.policy = policy
        self.budget = budget
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self.timeout_s = timeout_s
        self.metrics = metrics
        self.attempt = 0
        self.last_error: TritonError | None = None
        self.cancelled = False  # set when the caller cancelled a stream: its outcome is "cancelled"

    def remaining_s(self) -> float | None:
        """Time left for the next attempt; raises DeadlineExceededError when none is left."""
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            last = f"; the last attempt failed with: {self.last_error}" if self.last_error is not None else ""
            raise DeadlineExceededError(
                f"call to {self.model!r} exceeded its {self.timeout_s:g}s deadline after {self.attempt} attempt(s)"
                + last)
        return left

    @contextmanager
    def tracked(self) -> Iterator[None]:
        """Record the whole call (retries included) in the client metrics: duration, outcome, errors."""
        if self.metrics is None:
            yield
            return
        with self.metrics.track(self.model) as state:
            try:
                yield
            except TritonError as error:
                state["outcome"] = error_code(error)
                self.metrics.errors.labels(self.model, error_code(error)).inc()
                raise
            except (GeneratorExit, asyncio.CancelledError):  # a stream its caller abandoned or cancelled
                state["outcome"] = "cancelled"
                raise
            if self.cancelled:
                state["outcome"] = "cancelled"

    def start_attempt(self) -> float | None:
        remaining = self.remaining_s()  # before counting: an attempt the deadline stopped was not made
        self.attempt += 1
        return remaining

    def succeeded(self) -> None:
        self.budget.record_success()

    def retry_delay(self, error: TritonError) -> float | None:
        """Seconds to wait before retrying `error`, or None to give up (then `error` is raised)."""
        self.last_error = error
        if not self.policy.retryable(error) or self.attempt >= self.policy.max_attempts:
            return None
        if not self.budget.try_spend():
            return None
        delay = self.policy.backoff_s(self.attempt)
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                return None
            delay = min(delay, left)
        if self.metrics is not None:
            self.metrics.retries.labels(self.model, error_code(error)).inc()
        return delay

    def final_error(self, error: TritonError) -> TritonError:
        """The error to raise, noting how many attempts were made when there were several."""
        if self.attempt > 1:
            error.args = (f"{error.args[0]} (after {self.attempt} attempts)",)
        return error


def error_code(error: TritonError) -> str:
    """A short, bounded label for metrics: the error class."""
    return type(error).__name__.removesuffix("Error").lower() or "error"


def to_infer_inputs(inputs: Mapping[str, np.ndarray[Any, Any]]) -> list[Any]:
    """numpy arrays -> tritonclient InferInput objects (str arrays become BYTES)."""
    request = []
    for name, array in inputs.items():
        data = np.asarray(array)
        if data.dtype.kind == "U":
            data = np.char.encode(data, "utf-8").astype(np.object_)
        tensor = grpcclient.InferInput(name, list(data.shape), triton_datatype(data))
        tensor.set_data_from_numpy(data)
        request.append(tensor)
    return request


def requested_outputs(outputs: Sequence[str] | None, classes: Mapping[str, int] | None = None) -> list[Any] | None:
    """tritonclient's requested outputs; `classes` (name: k) asks for the top k classes of an output."""
    if not outputs:
        return None
    counts = classes or {}
    return [grpcclient.InferRequestedOutput(n, class_count=counts.get(n, 0)) for n in outputs]
