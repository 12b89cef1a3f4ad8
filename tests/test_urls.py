"""Addresses in every form the commands take, and the bad ones named."""

from __future__ import annotations

import pytest

from tuneship.urls import grpc_target, metrics_url


@pytest.mark.parametrize(("given", "grpc", "metrics"), [
    ("127.0.0.1:9001", "127.0.0.1:9001", "http://127.0.0.1:9001/metrics"),
    ("grpc://triton:9001", "triton:9001", None),
    ("http://triton:9002/metrics", None, "http://triton:9002/metrics"),
    ("http://triton:9002", "triton:9002", "http://triton:9002/metrics"),
    ("triton", "triton:8001", "http://triton:8002/metrics"),
    ("[::1]:9001", "[::1]:9001", "http://[::1]:9001/metrics"),
])
def test_addresses_in_every_form(given: str, grpc: str | None, metrics: str | None) -> None:
    if grpc is not None:
        assert grpc_target(given) == grpc
    if metrics is not None:
        assert metrics_url(given) == metrics


@pytest.mark.parametrize("bad", ["", "host:port", "ftp://x:1", "http://:9"])
def test_bad_addresses_are_named(bad: str) -> None:
    with pytest.raises(ValueError, match=r"address|empty"):
        grpc_target(bad) if not bad.startswith("ftp") else metrics_url(bad)


