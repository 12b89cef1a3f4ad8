"""The protocol-level client: one method per Triton gRPC call, typed, with our error hierarchy,
deadlines, retries and client metrics. Task conveniences (TextClassifier) live on top of it.

`AsyncTritonClient` (client/aio_client.py) has the same methods as coroutines.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tuneship.client._calls import CallPlan, ClientState, requested_outputs, to_infer_inputs
from tuneship.client._streams import IDLE_STREAM_CONNECTIONS, InferStream, open_stream
from tuneship.client.errors import PermissionDeniedError, TritonError, from_triton_exception
from tuneship.client.metrics import ClientMetrics
from tuneship.client.options import ClientOptions
from tuneship.client.results import Array, InferResult
from tuneship.client.validation import check_inputs


class TritonClient(ClientState):
    """Synchronous gRPC client for one Triton server.

    Args:
        url: Triton's gRPC endpoint, host:port (grpc://host:port and http://host:port are accepted too).
        options: deadlines, retries, TLS, headers, compression, keep-alive, message sizes.
        metrics: where to record client-side metrics (None: not recorded).
    """

    def __init__(self, url: str = "127.0.0.1:8001", options: ClientOptions | None = None,
                 metrics: ClientMetrics | None = None, *, timeout_s: float | None = None) -> None:
        super().__init__(url, options, metrics, timeout_s)
        self._client = grpcclient.InferenceServerClient(url=self.url, **self.options.grpc_kwargs())
        # tritonclient's sync client runs one stream per connection; finished streams leave theirs here for the
        # next one, so a stream does not pay a new connection (and TLS handshake) before its first response.
        self._idle_streams: list[Any] = []
        self._idle_lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------------------------------

    def _call(self, method: str, *args: Any, timeout_s: float | None = None, **kwargs: Any) -> Any:
        """One non-inference RPC with the default deadline and headers; errors mapped, not retried."""
        timeout = timeout_s if timeout_s is not None else self.options.timeout_s
        try:
            return getattr(self._client, method)(*args, headers=dict(self.options.headers) or None,
                                                 client_timeout=timeout, **kwargs)
        except InferenceServerException as error:
            raise from_triton_exception(error) from error

    # -- health -----------------------------------------------------------------------------------

    def is_server_live(self) -> bool:
        """Whether the server answers liveness; False (not an error) when it is unreachable."""
        try:
            return bool(self._call("is_server_live"))
        except TritonError:
            return False

    def is_server_ready(self) -> bool:
        """Whether the server is ready for inference; False when unreachable."""
        try:
            return bool(self._call("is_server_ready"))
        except TritonError:
            return False

    def is_model_ready(self, model: str, version: str = "") -> bool:
        """Whether `model` (a version, or the latest) is loaded and ready; False when unreachable."""
        try:
            return bool(self._call("is_model_ready", model, version))
        except TritonError:
            return False

    def wait_until_ready(self, model: str | None = None, timeout_s: float = 60.0, interval_s: float = 0.25) -> None:
        """Block until the server (and `model`, if given) is ready.

        Raises:
            ServerUnavailableError: the server was unreachable, or not ready, for the whole wait.
            ModelNotReadyError: the server was ready but `model` was not.
        """
        deadline = time.monotonic() + timeout_s
        reached = server_ready = False
        while True:
            server_ready = self.is_server_ready()
            reached = reached or server_ready or self.is_server_live()
            if server_ready and (model is None or self.is_model_ready(model)):
                return
            if time.monotonic() >= deadline:
                raise self._not_ready(model, timeout_s, reached, server_ready)
            time.sleep(interval_s)

    # -- metadata and configuration ---------------------------------------------------------------

    def get_server_metadata(self) -> dict[str, Any]:
        """Server name, version and protocol extensions."""
        result: dict[str, Any] = self._call("get_server_metadata", as_json=True)
        return result

    def get_model_metadata(self, model: str, version: str = "") -> dict[str, Any]:
        """Inputs and outputs (names, datatypes, shapes) and versions of `model`."""
        result: dict[str, Any] = self._call("get_model_metadata", model, version, as_json=True)
        return result

    def get_model_config(self, model: str, version: str = "") -> dict[str, Any]:
        """The model's configuration (config.pbtxt as Triton completed it)."""
        result: dict[str, Any] = self._call("get_model_config", model, version, as_json=True)
        config: dict[str, Any] = result.get("config", result)
        return config

    def get_inference_statistics(self, model: str = "", version: str = "") -> dict[str, Any]:
        """Triton's per-model counters and cumulative queue / compute times ('' for all models)."""
        result: dict[str, Any] = self._call("get_inference_statistics", model, version, as_json=True)
        return result

    def get_model_repository_index(self) -> list[dict[str, Any]]:
        """Every model in the repository with its state (READY, UNAVAILABLE...)."""
        result: dict[str, Any] = self._call("get_model_repository_index", as_json=True)
        models: list[dict[str, Any]] = result.get("models", [])
        return models

    def load_model(self, model: str, config: Mapping[str, Any] | None = None) -> None:
        """Load or reload `model` (explicit model-control mode).

        Args:
            config: a model configuration (JSON form, as `get_model_config` returns it) to load instead of the
                repository's config.pbtxt; Triton builds new instances when it differs from the loaded one.
        """
        self._call("load_model", model, **_load_kwargs(config))
        self._forget(model)

    def unload_model(self, model: str) -> None:
        """Unload `model` (explicit model-control mode)."""
        self._call("unload_model", model)
        self._forget(model)

    # -- inference --------------------------------------------------------------------------------

    def _input_spec(self, model: str, version: str) -> tuple[dict[str, Any], int]:
        key = (model, version)
        if key not in self._metadata:
            metadata = self.get_model_metadata(model, version)
            try:
                max_batch = int(self.get_model_config(model, version).get("max_batch_size", 0))
            except PermissionDeniedError:  # model config restricted to admins: skip the batch-limit check
                max_batch = 0
            self._metadata[key] = (metadata, max_batch)
        return self._metadata[key]

    def infer(self, model: str, inputs: Mapping[str, Array], outputs: Sequence[str] | None = None,
              version: str = "", timeout_s: float | None = None, request_id: str = "",
              validate: bool = True, parameters: Mapping[str, bool | int | str] | None = None,
              classes: Mapping[str, int] | None = None) -> InferResult:
        """Run one inference.

        Inputs are checked against the model's metadata first (names, datatypes, shapes, batch
        limit). Retryable failures are retried with back-off inside the deadline. `parameters` travel with the
        request to every model of an ensemble (Triton's request parameters). `classes` asks Triton's
        classification extension for the top k classes of an output (name: k) as "score:index:label" strings.

        Raises:
            InvalidInputError: the inputs do not fit the model (nothing was sent).
            DeadlineExceededError: no answer within the deadline.
            ServerUnavailableError: the server could not be reached, after the retries allowed.
            ModelNotReadyError, ServerError: as Triton reported them.
        """
        timeout = timeout_s if timeout_s is not None else self.options.timeout_s
        plan = CallPlan(model, self.options.retry, self.budget, timeout, self.metrics)
        with plan.tracked():
            # Inside the tracked block: a call refused before it is sent (unknown model, bad input,
            # server down) is an outcome the metrics must count too.
            if validate:
                metadata, max_batch = self._input_spec(model, version)
                check_inputs(model, metadata, inputs, max_batch)
            request = to_infer_inputs(inputs)
            requested = requested_outputs(outputs, classes)
            while True:
                remaining = plan.start_attempt()
                try:
                    response = self._client.infer(
                        model, request, model_version=version, outputs=requested, request_id=request_id,
                        client_timeout=remaining, headers=dict(self.options.headers) or None,
                        parameters=dict(parameters) if parameters else None,
                        compression_algorithm=self.options.compression)
                except InferenceServerException as raw:
                    error = from_triton_exception(raw)
                    delay = plan.retry_delay(error)
                    if delay is None:
                        raise plan.final_error(error) from raw
                    time.sleep(delay)
                    continue
                plan.succeeded()
                return _result(model, response, outputs)

    def stream_infer(self, model: str, inputs: Mapping[str, Array], outputs: Sequence[str] | None = None,
                     version: str = "", timeout_s: float | None = None, request_id: str = "",
                     validate: bool = True, parameters: Mapping[str, bool | int | str] | None = None) -> InferStream:
        """Send one request over gRPC's bidirectional stream and iterate its responses (a decoupled model
        answers only this way), the last one with `final` set. Same arguments as `infer`; the deadline covers
        the whole stream, and a failure before the first response is retried like `infer`'s.

        Nothing is sent until the stream is iterated. Iteration raises the errors `infer` raises;
        `InferStream.cancel()` cancels the request on the server and ends the iteration.
        """
        timeout = timeout_s if timeout_s is not None else self.options.timeout_s
        plan = CallPlan(model, self.options.retry, self.budget, timeout, self.metrics)

        def prepare() -> list[Any]:
            if validate:
                metadata, max_batch = self._input_spec(model, version)
                check_inputs(model, metadata, inputs, max_batch)
            return to_infer_inputs(inputs)

        return open_stream(self, plan, model, prepare, version, outputs, request_id,
                           dict(parameters) if parameters else None)

    def _stream_connection(self) -> Any:
        with self._idle_lock:
            if self._idle_streams:
                return self._idle_streams.pop()
        return grpcclient.InferenceServerClient(url=self.url, **self.options.grpc_kwargs())

    def _release_stream_connection(self, channel: Any, reuse: bool) -> None:
        if reuse:
            with self._idle_lock:
                if len(self._idle_streams) < IDLE_STREAM_CONNECTIONS:
                    self._idle_streams.append(channel)
                    return
        channel.close()

    def close(self) -> None:
        """Close the connection and the ones kept for later streams."""
        with self._idle_lock:
            idle, self._idle_streams = self._idle_streams, []
        for channel in idle:
            channel.close()
        self._client.close()

    def __enter__(self) -> TritonClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _load_kwargs(config: Mapping[str, Any] | None) -> dict[str, Any]:
    import json

    return {"config": json.dumps(config)} if config is not None else {}


def _result(model: str, response: Any, outputs: Sequence[str] | None) -> InferResult:
    message = response.get_response(as_json=True)
    names = list(outputs) if outputs else [o["name"] for o in message.get("outputs", [])]
    return InferResult(model=model, version=str(message.get("model_version", "")),
                       outputs={name: response.as_numpy(name) for name in names},
                       request_id=str(message.get("id", "")))
