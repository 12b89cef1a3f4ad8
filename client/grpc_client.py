"""The protocol-level client: one method per Triton gRPC call, typed, with our error hierarchy.

Task conveniences (TextClassifier) live in their own module on top of this one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from client.errors import ServerUnavailableError, TritonError, from_triton_exception

Array = npt.NDArray[Any]


class TritonClient:
    """Synchronous gRPC client for one Triton server."""

    def __init__(self, url: str = "127.0.0.1:8001", timeout_s: float | None = 30.0) -> None:
        """`url` is host:port of Triton's gRPC endpoint; `timeout_s` is the default per-call deadline."""
        self.url = url
        self.timeout_s = timeout_s
        self._client = grpcclient.InferenceServerClient(url=url)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self._client, method)(*args, **kwargs)
        except InferenceServerException as error:
            raise from_triton_exception(error) from error

    def is_server_live(self) -> bool:
        """Whether the server answers liveness; False (not an error) when it is unreachable."""
        try:
            return bool(self._call("is_server_live", client_timeout=self.timeout_s))
        except TritonError:
            return False

    def is_server_ready(self) -> bool:
        try:
            return bool(self._call("is_server_ready", client_timeout=self.timeout_s))
        except TritonError:
            return False

    def is_model_ready(self, model: str, version: str = "") -> bool:
        try:
            return bool(self._call("is_model_ready", model, version, client_timeout=self.timeout_s))
        except TritonError:
            return False

    def wait_until_ready(self, model: str | None = None, timeout_s: float = 60.0, interval_s: float = 0.5) -> None:
        """Block until the server (and `model`, if given) is ready; raise ServerUnavailableError on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.is_server_ready() and (model is None or self.is_model_ready(model)):
                return
            time.sleep(interval_s)
        what = f"model {model!r} on " if model else ""
        raise ServerUnavailableError(f"{what}Triton at {self.url} was not ready within {timeout_s:.0f}s")

    def get_model_metadata(self, model: str, version: str = "") -> dict[str, Any]:
        """Inputs and outputs (names, datatypes, shapes) as a dict."""
        result: dict[str, Any] = self._call("get_model_metadata", model, version, as_json=True,
                                            client_timeout=self.timeout_s)
        return result

    def get_model_config(self, model: str, version: str = "") -> dict[str, Any]:
        """The model's configuration (config.pbtxt as Triton completed it) as a dict."""
        result: dict[str, Any] = self._call("get_model_config", model, version, as_json=True,
                                            client_timeout=self.timeout_s)
        config: dict[str, Any] = result.get("config", result)
        return config

    def infer(self, model: str, inputs: Mapping[str, Array], outputs: Sequence[str] | None = None,
              timeout_s: float | None = None) -> dict[str, Array]:
        """Run one inference; returns each requested output (all outputs when None) as an array."""
        request_inputs = []
        for name, array in inputs.items():
            data = np.asarray(array)
            datatype = "BYTES" if data.dtype.kind in ("U", "S", "O") else np_to_triton_dtype(data.dtype)
            if data.dtype.kind == "U":
                data = np.char.encode(data, "utf-8").astype(np.object_)
            tensor = grpcclient.InferInput(name, list(data.shape), datatype)
            tensor.set_data_from_numpy(data)
            request_inputs.append(tensor)
        requested = [grpcclient.InferRequestedOutput(n) for n in outputs] if outputs else None
        result = self._call("infer", model, request_inputs, outputs=requested,
                            client_timeout=timeout_s if timeout_s is not None else self.timeout_s)
        names = list(outputs) if outputs else [o["name"] for o in result.get_response(as_json=True)["outputs"]]
        return {name: result.as_numpy(name) for name in names}

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> TritonClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
