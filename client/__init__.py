"""Typed gRPC client for Triton: protocol-level TritonClient / AsyncTritonClient and task-level
TextClassifier / AsyncTextClassifier, ImageClassifier / AsyncImageClassifier and Generator / AsyncGenerator,
with deadlines, retries and client-side metrics.

Light on purpose: no torch, no transformers.
"""

from tuneship.client._streams import AsyncInferStream, InferStream
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
from tuneship.client.feedback import PredictionSink
from tuneship.client.generator import AsyncGenerator, AsyncTextStream, Generation, Generator, TextStream
from tuneship.client.grpc_client import TritonClient
from tuneship.client.image_classifier import AsyncImageClassifier, ImageClassifier
from tuneship.client.metrics import ClientMetrics
from tuneship.client.options import ADMIN_HEADER, ClientOptions, TLSOptions
from tuneship.client.results import InferResult
from tuneship.client.retry import RetryBudget, RetryPolicy
from tuneship.client.text_classifier import AsyncTextClassifier, Prediction, TextClassifier

__all__ = [
    "ADMIN_HEADER",
    "AsyncGenerator",
    "AsyncImageClassifier",
    "AsyncInferStream",
    "AsyncTextClassifier",
    "AsyncTextStream",
    "AsyncTritonClient",
    "ClientMetrics",
    "ClientOptions",
    "DeadlineExceededError",
    "Generation",
    "Generator",
    "ImageClassifier",
    "InferResult",
    "InferStream",
    "InvalidInputError",
    "ModelNotReadyError",
    "PermissionDeniedError",
    "Prediction",
    "PredictionSink",
    "ResourceExhaustedError",
    "RetryBudget",
    "RetryPolicy",
    "ServerError",
    "ServerUnavailableError",
    "TLSOptions",
    "TextClassifier",
    "TextStream",
    "TritonClient",
    "TritonError",
]
