"""Address forms (moved to the core, `tuneship.urls`, which every stage uses); kept here for callers of the client."""

from tuneship.urls import grpc_target, metrics_url

__all__ = ["grpc_target", "metrics_url"]
