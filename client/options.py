"""Connection options shared by the sync and asyncio clients."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tuneship.client.retry import RetryPolicy

Compression = Literal["gzip", "deflate"]

# The header carrying the key of `tuneship serve --admin-key`. Triton matches restricted gRPC calls on the key
# name with this prefix (tuneship-admin-key); over HTTP the bare name is the header.
ADMIN_HEADER = "triton-grpc-protocol-tuneship-admin-key"


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
    """Largest message in either direction (default: tritonclient's, 2 GiB)."""
    max_reconnect_backoff_ms: int = 2000
    """Longest wait between gRPC's reconnection attempts. gRPC's own default grows to 120 s after repeated
    failures, leaving a channel failing fast for minutes after a server restart; the retry policy already
    paces the calls."""

    def grpc_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for tritonclient's InferenceServerClient (sync and aio alike)."""
        import tritonclient.grpc as grpcclient

        kwargs: dict[str, Any] = {}
        if self.tls is not None:
            kwargs.update(ssl=True, root_certificates=self.tls.root_certificates,
                          private_key=self.tls.private_key, certificate_chain=self.tls.certificate_chain)
        # All channel arguments in one list: tritonclient drops its own defaults (message sizes, keepalive)
        # as soon as any channel_args are given, so they are restated here.
        keepalive = grpcclient.KeepAliveOptions() if self.keepalive_time_ms is None else grpcclient.KeepAliveOptions(
            keepalive_time_ms=self.keepalive_time_ms, keepalive_timeout_ms=self.keepalive_timeout_ms,
            keepalive_permit_without_calls=True)
        size = self.max_message_bytes or grpcclient.MAX_GRPC_MESSAGE_SIZE
        kwargs["channel_args"] = [
            ("grpc.max_send_message_length", size),
            ("grpc.max_receive_message_length", size),
            ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
            ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
            ("grpc.initial_reconnect_backoff_ms", min(1000, self.max_reconnect_backoff_ms)),
            ("grpc.max_reconnect_backoff_ms", self.max_reconnect_backoff_ms),
        ]
        return kwargs
