"""Running the API with uvicorn: on a thread of its own beside the embedded Triton (`tuneship serve
--openai-port`, the tests), or in the foreground (`tuneship api`, in front of any Triton)."""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING

from tuneship.api.options import ApiOptions

if TYPE_CHECKING:
    import uvicorn


class ApiStartError(RuntimeError):
    """The API could not listen (port taken, bad certificate)."""


def _config(options: ApiOptions) -> uvicorn.Config:
    import uvicorn

    from tuneship.api.app import create_app

    if (options.tls_cert is None) != (options.tls_key is None):
        raise ApiStartError("--api-tls-cert and --api-tls-key go together (the API's certificate and its key)")
    # One worker, one event loop: the work is Triton's; the API only relays it (asynchronously).
    return uvicorn.Config(create_app(options), host=options.host, port=options.port, log_level="warning",
                          access_log=False, lifespan="on", timeout_graceful_shutdown=5,
                          ssl_certfile=str(options.tls_cert) if options.tls_cert else None,
                          ssl_keyfile=str(options.tls_key) if options.tls_key else None)


class ApiServer:
    """The API on a background thread: `with ApiServer(options) as api: api.url`."""

    def __init__(self, options: ApiOptions) -> None:
        import uvicorn

        self.options = options
        self._server = uvicorn.Server(_config(options))
        self._thread = threading.Thread(target=self._server.run, name="tuneship-api", daemon=True)
        self.port = options.port

    @property
    def url(self) -> str:
        scheme = "https" if self.options.tls_cert is not None else "http"
        host = "127.0.0.1" if self.options.host in ("0.0.0.0", "") else self.options.host
        return f"{scheme}://{host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> ApiServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                raise ApiStartError(f"the API could not listen on {self.options.host}:{self.options.port} "
                                    "(port in use, or a bad certificate; uvicorn's log above says which)")
            if time.monotonic() > deadline:
                self.stop()
                raise ApiStartError(f"the API did not start within {timeout_s:.0f} s")
            time.sleep(0.02)
        sockets = [s for server in self._server.servers for s in server.sockets]
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=15)

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def serve_forever(options: ApiOptions) -> None:
    """The API in the foreground until Ctrl-C or SIGTERM (uvicorn handles both)."""
    import uvicorn

    uvicorn.Server(_config(options)).run()
