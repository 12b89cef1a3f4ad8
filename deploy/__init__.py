"""Running models: the embedded Triton server and its metrics."""

from tuneship.deploy.metrics import ServerMetrics, scrape_metrics
from tuneship.deploy.server import ServeOptions, ServerError, TritonServer, free_port

__all__ = ["ServeOptions", "ServerError", "ServerMetrics", "TritonServer", "free_port", "scrape_metrics"]
