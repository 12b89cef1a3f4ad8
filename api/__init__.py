"""The OpenAI-compatible API in front of Triton: `/v1/chat/completions`, `/v1/completions` and `/v1/models` for
every generator a Triton server serves, relayed over gRPC by the project's own async client.

Light to import (FastAPI and uvicorn load when an app is made or run); `tuneship api` and `tuneship serve
--openai-port` run it.
"""

from typing import TYPE_CHECKING

from tuneship.api.errors import ApiError
from tuneship.api.options import ApiOptions
from tuneship.api.server import ApiServer, ApiStartError, serve_forever
from tuneship.lazy import lazy_names

__all__ = ["ApiError", "ApiOptions", "ApiServer", "ApiStartError", "serve_forever"]

_LAZY_NAMES = {"create_app": "tuneship.api.app"}
__getattr__ = lazy_names(__name__, _LAZY_NAMES)
__all__ += sorted([*_LAZY_NAMES])

if TYPE_CHECKING:
    from tuneship.api.app import create_app as create_app
