"""Typed gRPC client for Triton: protocol-level TritonClient and task-level TextClassifier.

Light on purpose: no torch, no transformers.
"""

from client.errors import (
    DeadlineExceededError,
    InvalidInputError,
    ModelNotReadyError,
    ServerError,
    ServerUnavailableError,
    TritonError,
)
from client.grpc_client import TritonClient
from client.text_classifier import Prediction, TextClassifier

__all__ = [
    "DeadlineExceededError",
    "InvalidInputError",
    "ModelNotReadyError",
    "Prediction",
    "ServerError",
    "ServerUnavailableError",
    "TextClassifier",
    "TritonClient",
    "TritonError",
]
