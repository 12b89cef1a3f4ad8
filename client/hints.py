"""Turn a failed call into a message that says what to do next (for command-line tools built on the client).

The typed errors keep Triton's own words for programs; a person at a terminal also wants to know whether
the server is down, which models it does have, and which key a restricted call needs.
"""

from __future__ import annotations

from collections.abc import Callable

from tuneship.client.errors import (
    ModelNotReadyError,
    PermissionDeniedError,
    ServerUnavailableError,
    TritonError,
)

ADMIN_KEY_HINT = "pass --admin-key KEY or set TUNESHIP_ADMIN_KEY (the key `tuneship serve --admin-key` was given)"


def _reason(error: TritonError) -> str:
    text = str(error)
    lowered = text.lower()
    if " was unreachable for " in text:
        return "unreachable for " + text.split(" was unreachable for ", 1)[1]
    if "connection refused" in lowered:
        return "connection refused"
    if "deadline" in lowered or "timed out" in lowered or "timeout" in lowered:
        return "no answer in time"
    if "name resolution" in lowered or "dns" in lowered:
        return "unknown host"
    if "ssl" in lowered or "handshake" in lowered or "certificate" in lowered:
        return "TLS handshake failed (check --root-cert, or drop it for a plain-text server)"
    return text.splitlines()[0] if text else type(error).__name__


def explain(error: TritonError, url: str, model: str | None = None,
            list_models: Callable[[], list[str]] | None = None) -> TritonError:
    """The same kind of error with a message naming the cause and the next step."""
    if isinstance(error, ServerUnavailableError) and "restricted" not in str(error).lower():
        return ServerUnavailableError(
            f"cannot reach Triton at {url} ({_reason(error)}): start a server with `tuneship serve` "
            f"or point --url at a running one", error.status)
    if isinstance(error, PermissionDeniedError):
        return PermissionDeniedError(f"{error}: this call is restricted to administrators; {ADMIN_KEY_HINT}",
                                     error.status)
    if isinstance(error, ModelNotReadyError) and model is not None:
        known = ""
        if list_models is not None:
            try:
                names = list_models()
            except TritonError:
                names = []
            known = (f"; the server has: {', '.join(names)}" if names
                     else "; the server lists no ready model (`tuneship deploy status` shows why)")
        said = str(error) if url in str(error) else f"model {model!r} is not ready on Triton at {url} ({error})"
        return ModelNotReadyError(f"{said}{known}", error.status)
    return error


def ready_model_names(index: list[dict[str, object]]) -> list[str]:
    """Names of the models the repository index reports READY, sorted, each once."""
    return sorted({str(entry["name"]) for entry in index if entry.get("state") == "READY"})
