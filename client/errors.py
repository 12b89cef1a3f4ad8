"""Typed errors for inference calls; each keeps Triton's own message."""

from __future__ import annotations


class TritonError(Exception):
    """Base class: something went wrong talking to Triton."""

    def __init__(self, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.status = status


class ServerUnavailableError(TritonError):
    """The server cannot be reached (down, restarting, wrong address)."""


class DeadlineExceededError(TritonError):
    """The call did not finish within its deadline."""


class InvalidInputError(TritonError, ValueError):
    """The request does not match what the model accepts."""


class ModelNotReadyError(TritonError):
    """The model is unknown to the server or not loaded."""


class ResourceExhaustedError(TritonError):
    """The server refused the call for lack of resources (queue full, too many requests)."""


class PermissionDeniedError(TritonError):
    """The call lacks the credentials (e.g. the key for Triton's restricted APIs)."""


class ServerError(TritonError):
    """The server failed while handling a valid request."""


_BY_STATUS: dict[str, type[TritonError]] = {
    "StatusCode.UNAVAILABLE": ServerUnavailableError,
    "StatusCode.DEADLINE_EXCEEDED": DeadlineExceededError,
    "StatusCode.INVALID_ARGUMENT": InvalidInputError,
    "StatusCode.NOT_FOUND": ModelNotReadyError,
    "StatusCode.RESOURCE_EXHAUSTED": ResourceExhaustedError,
    "StatusCode.UNAUTHENTICATED": PermissionDeniedError,
    "StatusCode.PERMISSION_DENIED": PermissionDeniedError,
    "StatusCode.UNIMPLEMENTED": ServerError,
    "StatusCode.INTERNAL": ServerError,
}


# Errors that reach a gRPC stream (decoupled models) carry a message and no status: the generator model starts
# its messages with the status, so a stream's refusal is typed (and retried, or not) like a unary call's.
_BY_PREFIX: dict[str, type[TritonError]] = {
    "invalid argument:": InvalidInputError,
    "resource exhausted:": ResourceExhaustedError,
    "unavailable:": ServerUnavailableError,
}


def from_triton_exception(error: Exception) -> TritonError:
    """Map tritonclient's InferenceServerException (or a gRPC error) to our hierarchy."""
    status_attr = getattr(error, "status", None)
    status = str(status_attr() if callable(status_attr) else status_attr or "")
    message_attr = getattr(error, "message", None)
    message = str(message_attr() if callable(message_attr) else message_attr or error)
    code = getattr(error, "code", None)
    if not status and callable(code):  # a raw grpc.RpcError (tritonclient's aio streams raise those)
        status = str(code())
        details = getattr(error, "details", None)
        message = str(details() if callable(details) else message)
    lowered = message.lower()
    # Triton answers restricted APIs without the key with UNAVAILABLE; the message tells them apart.
    cls = PermissionDeniedError if "restricted" in lowered and "header" in lowered else _BY_STATUS.get(status)
    if cls is None:
        cls = next((typed for prefix, typed in _BY_PREFIX.items() if lowered.startswith(prefix)), None)
    if cls is None:
        if "deadline" in lowered or "timeout" in lowered:
            cls = DeadlineExceededError
        elif "unavailable" in lowered or "failed to connect" in lowered or "connection refused" in lowered:
            cls = ServerUnavailableError
        elif "not ready" in lowered or "unknown model" in lowered or "not found" in lowered:
            cls = ModelNotReadyError
        else:
            cls = ServerError
    if cls is ServerError and (("unexpected" in lowered and "shape" in lowered) or "inference input" in lowered):
        cls = InvalidInputError
    return cls(message, status or None)
