"""Connection options shared by the sync and asyncio clients."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from client.retry import RetryPolicy

Compression = Literal["gzip", "deflate"]


@dataclass(frozen=True)
class TLSOptions:
    """Paths to PEM files; `root_certificates` verifies the server, the key and chain identify the client."""

    root_certificates: str | None = None
    private_key: str | None = None
    certificate_chain: str | None = None


@dataclass(frozen=True)
class ClientOptions:
    """How a client connects and how each call behaves by default."""

    timeout_s: float | None = 30.0
    """Default deadline of one call, retries included (None: no deadline)."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    tls: TLSOptions | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    """Sent with every call, e.g. {"authorization": "Bearer ..."} for a proxy in front of Triton."""
    compression: Compression | None = None
    keepalive_time_ms: int | None = None
    keepalive_timeout_ms: int = 20000
    max_message_bytes: int | None = None
    """Raises gRPC's 4 MiB default for both directions (large batches of long texts)."""

    def grpc_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for tritonclient's InferenceServerClient (sync and aio alike)."""
        import tritonclient.grpc as grpcclient

        kwargs: dict[str, Any] = {}
        if self.tls is not None:
            kwargs.update(ssl=True, root_certificates=self.tls.root_certificates,
                          private_key=self.tls.private_key, certificate_chain=self.tls.certificate_chain)
        if self.keepalive_time_ms is not None:
            kwargs["keepalive_options"] = grpcclient.KeepAliveOptions(
                keepalive_time_ms=self.keepalive_time_ms, keepalive_timeout_ms=self.keepalive_timeout_ms,
                keepalive_permit_without_calls=True)
        if self.max_message_bytes is not None:
            kwargs["channel_args"] = [("grpc.max_send_message_length", self.max_message_bytes),
                                      ("grpc.max_receive_message_length", self.max_message_bytes)]
        return kwargs
