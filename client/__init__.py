"""Typed gRPC client for Triton: protocol-level TritonClient / AsyncTritonClient and task-level
TextClassifier / AsyncTextClassifier, with deadlines, retries and client-side metrics.

Light on purpose: no torch, no transformers.
"""

from client.aio_client import AsyncTritonClient
from client.errors import (
    DeadlineExceededError,
    InvalidInputError,
    ModelNotReadyError,
    PermissionDeniedError,
    ResourceExhaustedError,
    ServerError,
    ServerUnavailableError,
    TritonError,
)
from client.grpc_client import TritonClient
from client.metrics import ClientMetrics
from client.options import ClientOptions, TLSOptions
from client.results import InferResult
from client.retry import RetryBudget, RetryPolicy
from client.text_classifier import AsyncTextClassifier, Prediction, TextClassifier

__all__ = [
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
