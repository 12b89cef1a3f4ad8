"""Typed gRPC client for Triton: protocol-level TritonClient / AsyncTritonClient and task-level
TextClassifier / AsyncTextClassifier, with deadlines, retries and client-side metrics.

Light on purpose: no torch, no transformers.
"""

from tuneship.client.aio_client import AsyncTritonClient
from tuneship.client.errors import (
    DeadlineExceededError,
    InvalidInputError,
    ModelNotReadyError,
    PermissionDeniedError,
    ResourceExhaustedError,
    ServerError,
    ServerUnavailableError,
    TritonError,
)
from tuneship.client.grpc_client import TritonClient
from tuneship.client.metrics import ClientMetrics
from tuneship.client.options import ADMIN_HEADER, ClientOptions, TLSOptions
from tuneship.client.results import InferResult
from tuneship.client.retry import RetryBudget, RetryPolicy
from tuneship.client.text_classifier import AsyncTextClassifier, Prediction, TextClassifier

__all__ = [
    "ADMIN_HEADER",
    "AsyncTextClassifier",
    "AsyncTritonClient",
    "ClientMetrics",
    "ClientOptions",
    "DeadlineExceededError",
    "InferResult",
    "InvalidInputError",
    "ModelNotReadyError",
    "PermissionDeniedError",
    "Prediction",
    "ResourceExhaustedError",
    "RetryBudget",
    "RetryPolicy",
    "ServerError",
    "ServerUnavailableError",
    "TLSOptions",
    "TextClassifier",
    "TritonClient",
    "TritonError",
]
