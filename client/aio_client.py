"""The asyncio twin of TritonClient: same names, same arguments, coroutines instead of calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from tuneship.client._calls import CallPlan, ClientState, requested_outputs, to_infer_inputs
from tuneship.client._streams import AsyncInferStream, open_async_stream
from tuneship.client.errors import PermissionDeniedError, TritonError, from_triton_exception
from tuneship.client.grpc_client import _load_kwargs, _result
from tuneship.client.metrics import ClientMetrics
from tuneship.client.options import ClientOptions
from tuneship.client.results import Array, InferResult
from tuneship.client.validation import check_inputs


class AsyncTritonClient(ClientState):
    """asyncio gRPC client for one Triton server; see TritonClient for the meaning of each method."""

    def __init__(self, url: str = "127.0.0.1:8001", options: ClientOptions | None = None,
                 metrics: ClientMetrics | None = None, *, timeout_s: float | None = None) -> None:
        super().__init__(url, options, metrics, timeout_s)
        self._client = aioclient.InferenceServerClient(url=self.url, **self.options.grpc_kwargs())

    async def _call(self, method: str, *args: Any, timeout_s: float | None = None, **kwargs: Any) -> Any:
        timeout = timeout_s if timeout_s is not None else self.options.timeout_s
        try:
            return await getattr(self._client, method)(*args, headers=dict(self.options.headers) or None,
                                                       client_timeout=timeout, **kwargs)
        except InferenceServerException as error:
            raise from_triton_exception(error) from error

    async def is_server_live(self) -> bool:
        try:
            return bool(await self._call("is_server_live"))
        except TritonError:
            return False

    async def is_server_ready(self) -> bool:
        try:
            return bool(await self._call("is_server_ready"))
        except TritonError:
            return False

    async def is_model_ready(self, model: str, version: str = "") -> bool:
        try:
            return bool(await self._call("is_model_ready", model, version))
        except TritonError:
            return False

    async def wait_until_ready(self, model: str | None = None, timeout_s: float = 60.0,
                               interval_s: float = 0.25) -> None:
        deadline = time.monotonic() + timeout_s
        reached = server_ready = False
        while True:
            server_ready = await self.is_server_ready()
            reached = reached or server_ready or await self.is_server_live()
            if server_ready and (model is None or await self.is_model_ready(model)):
                return
            if time.monotonic() >= deadline:
                raise self._not_ready(model, timeout_s, reached, server_ready)
            await asyncio.sleep(interval_s)

    async def get_server_metadata(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("get_server_metadata", as_json=True)
        return result

    async def get_model_metadata(self, model: str, version: str = "") -> dict[str, Any]:
        result: dict[str, Any] = await self._call("get_model_metadata", model, version, as_json=True)
        return result

    async def get_model_config(self, model: str, version: str = "") -> dict[str, Any]:
        result: dict[str, Any] = await self._call("get_model_config", model, version, as_json=True)
        config: dict[str, Any] = result.get("config", result)
        return config

    async def get_inference_statistics(self, model: str = "", version: str = "") -> dict[str, Any]:
        result: dict[str, Any] = await self._call("get_inference_statistics", model, version, as_json=True)
        return result

    async def get_model_repository_index(self) -> list[dict[str, Any]]:
        result: dict[str, Any] = await self._call("get_model_repository_index", as_json=True)
        models: list[dict[str, Any]] = result.get("models", [])
        return models

    async def load_model(self, model: str, config: Mapping[str, Any] | None = None) -> None:
        await self._call("load_model", model, **_load_kwargs(config))
        self._forget(model)

    async def unload_model(self, model: str) -> None:
        await self._call("unload_model", model)
        self._forget(model)

    async def _input_spec(self, model: str, version: str) -> tuple[dict[str, Any], int]:
        key = (model, version)
        if key not in self._metadata:
            metadata = await self.get_model_metadata(model, version)
            try:
                max_batch = int((await self.get_model_config(model, version)).get("max_batch_size", 0))
            except PermissionDeniedError:  # model config restricted to admins: skip the batch-limit check
                max_batch = 0
            self._metadata[key] = (metadata, max_batch)
        return self._metadata[key]

    async def infer(self, model: str, inputs: Mapping[str, Array], outputs: Sequence[str] | None = None,
                    version: str = "", timeout_s: float | None = None, request_id: str = "",
                    validate: bool = True, parameters: Mapping[str, bool | int | str] | None = None,
              classes: Mapping[str, int] | None = None) -> InferResult:
        timeout = timeout_s if timeout_s is not None else self.options.timeout_s
        plan = CallPlan(model, self.options.retry, self.budget, timeout, self.metrics)
        with plan.tracked():
            if validate:
                metadata, max_batch = await self._input_spec(model, version)
                check_inputs(model, metadata, inputs, max_batch)
            request = to_infer_inputs(inputs)
            requested = requested_outputs(outputs, classes)
            while True:
                remaining = plan.start_attempt()
                try:
                    response = await self._client.infer(
                        model, request, model_version=version, outputs=requested, request_id=request_id,
                        client_timeout=remaining, headers=dict(self.options.headers) or None,
                        parameters=dict(parameters) if parameters else None,
                        compression_algorithm=self.options.compression)
                except InferenceServerException as raw:
                    error = from_triton_exception(raw)
                    delay = plan.retry_delay(error)
                    if delay is None:
                        raise plan.final_error(error) from raw
                    await asyncio.sleep(delay)
                    continue
                plan.succeeded()
                return _result(model, response, outputs)

    def stream_infer(self, model: str, inputs: Mapping[str, Array], outputs: Sequence[str] | None = None,
                     version: str = "", timeout_s: float | None = None, request_id: str = "",
                     validate: bool = True,
                     parameters: Mapping[str, bool | int | str] | None = None) -> AsyncInferStream:
        """`async for response in client.stream_infer(...)`; see TritonClient.stream_infer."""
        timeout = timeout_s if timeout_s is not None else self.options.timeout_s
        plan = CallPlan(model, self.options.retry, self.budget, timeout, self.metrics)

        async def prepare() -> list[Any]:
            if validate:
                metadata, max_batch = await self._input_spec(model, version)
                check_inputs(model, metadata, inputs, max_batch)
            return to_infer_inputs(inputs)

        return open_async_stream(self, plan, model, prepare, version, outputs, request_id,
                                 dict(parameters) if parameters else None)

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> AsyncTritonClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()
