"""Errors in OpenAI's shape (`{"error": {"message", "type", "param", "code"}}`) with the status OpenAI's SDKs map
to their exception classes, and the translation of the gRPC client's typed errors into them."""

from __future__ import annotations

from typing import Any

from tuneship.client import (
    DeadlineExceededError,
    InvalidInputError,
    ModelNotReadyError,
    PermissionDeniedError,
    ResourceExhaustedError,
    ServerUnavailableError,
    TritonError,
)

# Seconds a caller refused for a full queue (or a restarting server) is told to wait before trying again.
RETRY_AFTER_S = 1


class ApiError(Exception):
    """A refusal or failure that reaches the caller as an OpenAI error object."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after_s)} if self.retry_after_s is not None else {}


def bad_parameter(param: str, message: str, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def unsupported(param: str, why: str) -> ApiError:
    return ApiError(400, f"{param}: {why}", param=param, code="unsupported_parameter")


def model_not_found(model: str, known: list[str]) -> ApiError:
    served = ", ".join(known) or "none (no generator is loaded)"
    return ApiError(404, f"The model '{model}' does not exist; models here: {served}", param="model",
                    code="model_not_found")


def from_triton(error: TritonError, model: str) -> ApiError:
    """The gRPC client's typed error as OpenAI's: the server's own words, the status its kind calls for."""
    message = str(error)
    if isinstance(error, InvalidInputError):
        return ApiError(400, message, code="invalid_value")
    if isinstance(error, ResourceExhaustedError):
        return ApiError(429, message, type="rate_limit_error", code="queue_full", retry_after_s=RETRY_AFTER_S)
    if isinstance(error, DeadlineExceededError):
        return ApiError(504, f"{model}: no answer within the deadline ({message})", type="timeout_error",
                        code="deadline_exceeded")
    if isinstance(error, ModelNotReadyError):
        return ApiError(503, f"{model} is not ready on the server ({message})", type="server_error",
                        code="model_not_ready", retry_after_s=RETRY_AFTER_S)
    if isinstance(error, ServerUnavailableError):
        return ApiError(503, f"the inference server is unavailable ({message})", type="server_error",
                        code="server_unavailable", retry_after_s=RETRY_AFTER_S)
    if isinstance(error, PermissionDeniedError):
        return ApiError(502, f"the inference server refused the API's call ({message})", type="server_error",
                        code="upstream_permission_denied")
    return ApiError(500, f"the inference server failed ({message})", type="server_error", code="server_error")
