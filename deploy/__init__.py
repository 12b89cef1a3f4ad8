"""Running models: the embedded Triton server and its metrics."""

from typing import TYPE_CHECKING

from tuneship.deploy.metrics import ServerMetrics, scrape_metrics
from tuneship.deploy.options import ServeOptions
from tuneship.deploy.server import ServerError, TritonServer, free_port
from tuneship.lazy import lazy_names

__all__ = ["ServeOptions", "ServerError", "ServerMetrics", "TritonServer", "free_port", "scrape_metrics"]

# What other stages use of this one, loaded on first use (tuneship.lazy); mypy reads the imports below.
_LAZY_NAMES = {
    "switch_to": "tuneship.deploy.publish",
}
__getattr__ = lazy_names(__name__, _LAZY_NAMES)
__all__ += sorted([*_LAZY_NAMES])

if TYPE_CHECKING:
    from tuneship.deploy.publish import switch_to as switch_to
