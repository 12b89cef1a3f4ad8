"""Retries with exponential back-off and jitter, bounded per call and by a shared budget."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

from tuneship.client.errors import ModelNotReadyError, ResourceExhaustedError, ServerUnavailableError, TritonError


@dataclass(frozen=True)
class RetryPolicy:
    """Which failures are retried, how often and how far apart.

    Only failures that say nothing about the request itself are retried: the server being
    unavailable (restarting, overloaded connection) and, if enabled, resource exhaustion. Invalid
    input, unknown models and deadlines are never retried.
    """

    max_attempts: int = 4
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    multiplier: float = 2.0
    jitter: float = 0.5
    """Each back-off is scaled by a random factor in [1 - jitter, 1 + jitter]."""
    retry_resource_exhausted: bool = False
    retry_model_not_ready: bool = False
    """Also retry "model not ready / no available versions": what a server answers while it restarts
    or swaps models. Off by default, since a model that is simply not deployed would be retried too."""
    budget: RetryBudget | None = field(default=None, compare=False)

    def retryable(self, error: TritonError) -> bool:
        if isinstance(error, ServerUnavailableError):
            return True
        if self.retry_model_not_ready and isinstance(error, ModelNotReadyError):
            return True
        return self.retry_resource_exhausted and isinstance(error, ResourceExhaustedError)

    def backoff_s(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Delay before retry `retry_number` (1 for the first retry)."""
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (retry_number - 1))
        factor = 1.0 + (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, base * factor)


class RetryBudget:
    """A token bucket shared by the calls of one client (gRPC's retry throttling idea).

    Every retry spends a token, every success earns `ratio` tokens back, so during an outage the
    retries stop after `max_tokens` instead of multiplying the load on a struggling server.
    """

    def __init__(self, max_tokens: float = 20.0, ratio: float = 0.1) -> None:
        self.max_tokens = max_tokens
        self.ratio = ratio
        self._tokens = max_tokens
        self._lock = threading.Lock()

    @property
    def tokens(self) -> float:
        return self._tokens

    def try_spend(self) -> bool:
        with self._lock:
            if self._tokens < 1.0:
                return False
            self._tokens -= 1.0
            return True

    def record_success(self) -> None:
        with self._lock:
            self._tokens = min(self.max_tokens, self._tokens + self.ratio)
