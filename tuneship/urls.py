"""One address form everywhere: `host:port` or a URL with a scheme, for gRPC and metrics endpoints alike.

Users copy addresses between commands (the serve banner prints URLs, Prometheus wants `http://.../metrics`,
gRPC wants `host:port`); each command accepts all of them and takes what it needs.
"""

from __future__ import annotations

from urllib.parse import urlsplit

_GRPC_SCHEMES = {"", "grpc", "grpcs", "http", "https", "dns"}


def _split(url: str, what: str) -> tuple[str, str, int | None, str]:
    """(scheme, host, port, path) of `url`, with or without a scheme; ValueError names what is wrong."""
    text = url.strip()
    if not text:
        raise ValueError(f"empty {what} address; expected HOST:PORT, e.g. 127.0.0.1:8001")
    parsed = urlsplit(text if "://" in text else f"//{text}")
    try:
        port = parsed.port
    except ValueError:
        raise ValueError(f"{what} address {url!r}: the port is not a number between 0 and 65535") from None
    host = parsed.hostname or ""
    if not host:
        raise ValueError(f"{what} address {url!r} has no host; expected HOST:PORT, e.g. 127.0.0.1:8001")
    if ":" in host:  # IPv6 literal: keep its brackets in host:port form
        host = f"[{host}]"
    return parsed.scheme.lower(), host, port, parsed.path


def grpc_target(url: str, default_port: int = 8001) -> str:
    """`host:port` for gRPC from `host:port`, `host`, `grpc://host:port` or `http://host:port`."""
    scheme, host, port, path = _split(url, "gRPC")
    if scheme not in _GRPC_SCHEMES:
        raise ValueError(f"gRPC address {url!r}: unknown scheme {scheme!r}; use HOST:PORT or grpc://HOST:PORT")
    if path not in ("", "/"):
        raise ValueError(f"gRPC address {url!r} has a path ({path}); a gRPC endpoint is only HOST:PORT")
    return f"{host}:{port if port is not None else default_port}"


def metrics_url(url: str, default_port: int = 8002) -> str:
    """Full Prometheus URL from `host:port`, `http://host:port` or `http://host:port/metrics`."""
    scheme, host, port, path = _split(url, "metrics")
    if scheme not in ("", "http", "https"):
        raise ValueError(f"metrics address {url!r}: unknown scheme {scheme!r}; use HOST:PORT or http://HOST:PORT")
    if path in ("", "/"):
        path = "/metrics"
    return f"{scheme or 'http'}://{host}:{port if port is not None else default_port}{path}"
