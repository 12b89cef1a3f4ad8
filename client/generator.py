"""Task-level API for text generation: prompts or chat messages in, text out, streamed piece by piece.

Talks to tuneship's decoupled generator model (the input and output names of Triton's vLLM and TensorRT-LLM
backends: `text_input` or `messages`, `stream`, sampling inputs; `text_output`) over gRPC's bidirectional
stream, the only way Triton's gRPC endpoint serves decoupled models. The pieces are the server's decoded
text (its tokenizer stream keeps the spacing right across token boundaries), so `"".join(pieces)` is the text.

Deadlines and typed errors are the protocol client's; a failure before the first piece is retried like any
call (the caller has seen nothing), never one after it (the caller has seen part of an answer).
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tuneship.client.aio_client import AsyncTritonClient
from tuneship.client.errors import DeadlineExceededError, InvalidInputError, TritonError, from_triton_exception
from tuneship.client.grpc_client import TritonClient
from tuneship.client.metrics import ClientMetrics

_IDLE_CONNECTIONS = 4  # connections a Generator keeps for its next streams

Message = Mapping[str, str]
Prompt = str | Sequence[Message]


@dataclass(frozen=True)
class Generation:
    """A finished generation: the text, how it ended, and how fast it came."""

    text: str
    tokens: int
    finish_reason: str  # "stop" (end of answer or a stop string), "length" (max_tokens), "cancelled"
    time_to_first_token_s: float
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        """Decode speed after the first token (the prompt's prefill excluded)."""
        decoding = self.seconds - self.time_to_first_token_s
        return (self.tokens - 1) / decoding if self.tokens > 1 and decoding > 0 else 0.0


def _inputs(prompt: Prompt, stream: bool, params: Mapping[str, Any]) -> list[Any]:
    def tensor(name: str, array: np.ndarray[Any, Any], datatype: str) -> Any:
        item = grpcclient.InferInput(name, list(array.shape), datatype)
        item.set_data_from_numpy(array)
        return item

    if isinstance(prompt, str):
        if not prompt.strip():
            raise InvalidInputError("the prompt is empty")
        tensors = [tensor("text_input", np.array([prompt.encode("utf-8")], dtype=np.object_), "BYTES")]
    else:
        messages = [dict(m) for m in prompt]
        if not messages or any(m.get("role") not in ("system", "user", "assistant") or not isinstance(
                m.get("content"), str) for m in messages):
            raise InvalidInputError("messages must be a non-empty list of {'role': system|user|assistant, "
                                    "'content': text}")
        tensors = [tensor("messages", np.array([json.dumps(messages).encode("utf-8")], dtype=np.object_), "BYTES")]
    tensors.append(tensor("stream", np.array([stream], dtype=np.bool_), "BOOL"))
    _check_params(params)
    kinds = {"max_tokens": (np.int32, "INT32"), "min_tokens": (np.int32, "INT32"),
             "temperature": (np.float32, "FP32"), "top_p": (np.float32, "FP32"),
             "top_k": (np.int32, "INT32"), "repetition_penalty": (np.float32, "FP32"),
             "random_seed": (np.uint64, "UINT64")}
    for name, value in params.items():
        if value is None:
            continue
        if name == "stop":
            stops = [value] if isinstance(value, str) else list(value)
            if stops:
                tensors.append(tensor("stop", np.array([s.encode("utf-8") for s in stops], dtype=np.object_),
                                      "BYTES"))
            continue
        if name == "seed":
            name = "random_seed"
        if name not in kinds:
            raise InvalidInputError(f"unknown generation parameter {name!r}; use max_tokens, min_tokens, "
                                    "temperature, top_p, top_k, repetition_penalty, seed or stop")
        numpy_type, datatype = kinds[name]
        tensors.append(tensor(name, np.array([value], dtype=numpy_type), datatype))
    return tensors


def _check_params(params: Mapping[str, Any]) -> None:
    """Refuse what the server would refuse, before anything is sent, with the same words."""
    max_tokens = params.get("max_tokens")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise InvalidInputError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    temperature = params.get("temperature")
    if temperature is not None and temperature < 0:
        raise InvalidInputError(f"temperature must be >= 0, got {temperature}")
    top_p = params.get("top_p")
    if top_p is not None and not 0 < top_p <= 1:
        raise InvalidInputError(f"top_p must be in (0, 1], got {top_p}")
    top_k = params.get("top_k")
    if top_k is not None and top_k < 1:
        raise InvalidInputError(f"top_k must be at least 1, got {top_k}")
    penalty = params.get("repetition_penalty")
    if penalty is not None and penalty <= 0:
        raise InvalidInputError(f"repetition_penalty must be > 0, got {penalty}")


_OUTPUTS = ("text_output", "finish_reason", "completion_tokens")


def _read(result: Any) -> tuple[str, str | None, int | None, bool]:
    """(text piece, finish reason, completion tokens, final?) of one streamed response."""
    raw = result.as_numpy("text_output")
    piece = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in raw.reshape(-1)).decode(
        "utf-8", errors="replace") if raw is not None else ""
    reason = result.as_numpy("finish_reason")
    count = result.as_numpy("completion_tokens")
    final_parameter = result.get_response().parameters.get("triton_final_response")
    final = bool(final_parameter.bool_param) if final_parameter is not None else reason is not None
    reason_text = None
    if reason is not None and reason.size:
        value = reason.reshape(-1)[0]
        reason_text = value.decode() if isinstance(value, bytes) else str(value)
    return piece, reason_text, int(count.reshape(-1)[0]) if count is not None and count.size else None, final


class _Tracker:
    """Times one generation and records it in the client metrics."""

    def __init__(self, model: str, metrics: ClientMetrics | None) -> None:
        self.model = model
        self.metrics = metrics
        self.started = time.perf_counter()
        self.first: float | None = None
        self.last = self.started
        self.pieces: list[str] = []

    def piece(self, text: str) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now - self.started
        elif self.metrics is not None:
            self.metrics.inter_token.labels(self.model).observe(now - self.last)
        self.last = now
        self.pieces.append(text)

    def finish(self, reason: str | None, count: int | None) -> Generation:
        seconds = time.perf_counter() - self.started
        first = self.first if self.first is not None else seconds
        text = "".join(self.pieces)
        generation = Generation(text=text, tokens=count if count is not None else len(self.pieces),
                                finish_reason=reason or "stop", time_to_first_token_s=first, seconds=seconds)
        if self.metrics is not None:
            self.metrics.time_to_first_token.labels(self.model).observe(first)
            if generation.tokens_per_second:
                self.metrics.tokens_per_second.labels(self.model).observe(generation.tokens_per_second)
            self.metrics.generated_tokens.labels(self.model).inc(generation.tokens)
        return generation


class TextStream:
    """The pieces of one streamed generation; `generation` holds the summary once the stream is exhausted."""

    def __init__(self, pieces: Iterator[str], tracker: _Tracker, cancel: Any) -> None:
        self._pieces = pieces
        self._tracker = tracker
        self._cancel = cancel
        self.generation: Generation | None = None

    def __iter__(self) -> Iterator[str]:
        return self._pieces

    def cancel(self) -> None:
        """Stop generating: the server notices the cancelled request and stops its generator."""
        self._cancel()


class _Settings:
    def __init__(self, model: str, max_tokens: int | None, temperature: float | None) -> None:
        self.model = model
        self.defaults: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature}

    def params(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        merged = dict(self.defaults)
        merged.update(overrides)
        return {k: v for k, v in merged.items() if v is not None}


class Generator(_Settings):
    """Generate text with a model served by Triton; sync. `AsyncGenerator` is its asyncio twin.

    Args:
        client: the protocol-level client (its URL, TLS, headers, deadline, retry policy and metrics are used).
        model: the generator model's name on the server.
        max_tokens, temperature: defaults for every call (None: the server's).
    """

    def __init__(self, client: TritonClient, model: str = "chat", max_tokens: int | None = None,
                 temperature: float | None = None) -> None:
        super().__init__(model, max_tokens, temperature)
        self.client = client
        # tritonclient runs one stream per connection at a time; finished streams leave theirs here for the
        # next one, so a call does not pay a new connection (and TLS handshake) before its first token.
        self._idle: list[Any] = []
        self._pool = threading.Lock()

    def close(self) -> None:
        """Close the connections kept for later streams (they are also closed when garbage-collected)."""
        with self._pool:
            idle, self._idle = self._idle, []
        for channel in idle:
            channel.close()

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connection(self) -> Any:
        with self._pool:
            if self._idle:
                return self._idle.pop()
        return grpcclient.InferenceServerClient(url=self.client.url, **self.client.options.grpc_kwargs())

    def _release(self, channel: Any, reuse: bool) -> None:
        if reuse:
            with self._pool:
                if len(self._idle) < _IDLE_CONNECTIONS:
                    self._idle.append(channel)
                    return
        channel.close()

    def generate(self, prompt: Prompt, *, timeout_s: float | None = None, **params: Any) -> Generation:
        """The whole answer in one response (`stream=False` on the server)."""
        stream = self._open(prompt, False, timeout_s, params)
        for _ in stream:
            pass
        assert stream.generation is not None
        return stream.generation

    def stream(self, prompt: Prompt, *, timeout_s: float | None = None, **params: Any) -> TextStream:
        """Pieces of the answer as the server decodes them; iterate it, then read `.generation`."""
        return self._open(prompt, True, timeout_s, params)

    def _open(self, prompt: Prompt, streaming: bool, timeout_s: float | None, params: Mapping[str, Any]) -> TextStream:
        inputs = _inputs(prompt, streaming, self.params(params))
        options = self.client.options
        timeout = timeout_s if timeout_s is not None else options.timeout_s
        deadline = None if timeout is None else time.monotonic() + timeout
        metrics = self.client.metrics
        tracker = _Tracker(self.model, metrics)
        responses: queue.Queue[tuple[Any, Any]] = queue.Queue()
        holder: dict[str, Any] = {}
        attempts = [0]

        def start() -> None:
            attempts[0] += 1
            channel = self._connection()
            holder["channel"] = channel
            channel.start_stream(callback=lambda result, error: responses.put((result, error)),
                                 stream_timeout=timeout, headers=dict(options.headers) or None)
            try:
                channel.async_stream_infer(self.model, inputs, outputs=[grpcclient.InferRequestedOutput(n)
                                                                        for n in _OUTPUTS])
            except InferenceServerException:
                # The stream failed before the request went out (server unreachable, say); the cause reaches
                # the callback, and the loop below handles it like any error of the stream.
                if responses.empty():
                    responses.put((None, InferenceServerException("the stream to the server failed to start",
                                                                  status="StatusCode.UNAVAILABLE")))

        def close(cancel: bool = False, reuse: bool = False) -> None:
            channel = holder.pop("channel", None)
            if channel is not None:
                channel.stop_stream(cancel_requests=cancel)
                self._release(channel, reuse and not cancel)

        def pieces() -> Iterator[str]:
            state = metrics.track(self.model) if metrics is not None else None
            outcome = state.__enter__() if state is not None else {}
            try:
                start()
                while True:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise DeadlineExceededError(f"generation by {self.model!r} exceeded its {timeout:g}s deadline")
                    try:
                        result, error = responses.get(timeout=left)
                    except queue.Empty:
                        continue
                    if error is not None:
                        typed = from_triton_exception(error) if isinstance(error, InferenceServerException) \
                            else TritonError(str(error))
                        if tracker.first is None and self.client.options.retry.retryable(typed) and \
                                attempts[0] < self.client.options.retry.max_attempts:
                            close()
                            time.sleep(self.client.options.retry.backoff_s(attempts[0]))
                            start()  # nothing was seen yet: safe to ask again
                            continue
                        raise typed
                    piece, reason, count, final = _read(result)
                    if piece:
                        tracker.piece(piece)
                        yield piece
                    if final:
                        stream.generation = tracker.finish(reason, count)
                        return
            except TritonError as error:
                outcome["outcome"] = type(error).__name__.removesuffix("Error").lower()
                if metrics is not None:
                    metrics.errors.labels(self.model, outcome["outcome"]).inc()
                raise
            finally:
                # A stream that ended with its final response leaves a healthy connection for the next call.
                close(cancel=stream.generation is None, reuse=stream.generation is not None)
                if state is not None:
                    state.__exit__(None, None, None)

        stream = TextStream(pieces(), tracker, lambda: close(cancel=True))
        return stream


class AsyncTextStream:
    """The asyncio twin of TextStream: `async for piece in stream`, then `stream.generation`."""

    def __init__(self) -> None:
        self.generation: Generation | None = None
        self._pieces: AsyncIterator[str] | None = None
        self._cancel: Any = None

    def __aiter__(self) -> AsyncIterator[str]:
        assert self._pieces is not None
        return self._pieces

    def cancel(self) -> None:
        if self._cancel is not None:
            self._cancel()


class AsyncGenerator(_Settings):
    """The asyncio twin of Generator: `await generate(...)`, `async for piece in stream(...)`."""

    def __init__(self, client: AsyncTritonClient, model: str = "chat", max_tokens: int | None = None,
                 temperature: float | None = None) -> None:
        super().__init__(model, max_tokens, temperature)
        self.client = client

    async def generate(self, prompt: Prompt, *, timeout_s: float | None = None, **params: Any) -> Generation:
        stream = self._open(prompt, False, timeout_s, params)
        async for _ in stream:
            pass
        assert stream.generation is not None
        return stream.generation

    def stream(self, prompt: Prompt, *, timeout_s: float | None = None, **params: Any) -> AsyncTextStream:
        return self._open(prompt, True, timeout_s, params)

    def _open(self, prompt: Prompt, streaming: bool, timeout_s: float | None,
              params: Mapping[str, Any]) -> AsyncTextStream:
        inputs = _inputs(prompt, streaming, self.params(params))
        options = self.client.options
        timeout = timeout_s if timeout_s is not None else options.timeout_s
        metrics = self.client.metrics
        tracker = _Tracker(self.model, metrics)
        stream = AsyncTextStream()
        current: dict[str, Any] = {}

        async def requests() -> AsyncIterator[dict[str, Any]]:
            yield {"model_name": self.model, "inputs": inputs,
                   "outputs": [grpcclient.InferRequestedOutput(n) for n in _OUTPUTS]}

        async def pieces() -> AsyncIterator[str]:
            attempts = 0
            try:
                async with asyncio.timeout(timeout):
                    while True:
                        attempts += 1
                        responses = self.client._client.stream_infer(requests(), stream_timeout=timeout,
                                                                     headers=dict(options.headers) or None)
                        current["responses"] = responses
                        retry = False
                        iterator = responses.__aiter__()
                        while True:
                            try:
                                result, error = await iterator.__anext__()
                            except StopAsyncIteration:
                                break
                            except grpc.RpcError as raw:  # the stream itself failed (server gone, say)
                                result, error = None, raw
                            if error is not None:
                                typed = from_triton_exception(error)
                                if tracker.first is None and options.retry.retryable(typed) and \
                                        attempts < options.retry.max_attempts:
                                    retry = True  # nothing was seen yet: safe to ask again
                                    break
                                raise typed
                            piece, reason, count, final = _read(result)
                            if piece:
                                tracker.piece(piece)
                                yield piece
                            if final:
                                stream.generation = tracker.finish(reason, count)
                                return
                        if not retry:
                            raise TritonError(f"the stream from {self.model!r} ended without a final response")
                        responses.cancel()
                        await asyncio.sleep(options.retry.backoff_s(attempts))
            except TimeoutError:
                if metrics is not None:
                    metrics.errors.labels(self.model, "deadlineexceeded").inc()
                raise DeadlineExceededError(f"generation by {self.model!r} exceeded its {timeout:g}s deadline") \
                    from None
            except TritonError as error:
                if metrics is not None:
                    metrics.errors.labels(self.model, type(error).__name__.removesuffix("Error").lower()).inc()
                raise
            finally:
                if stream.generation is None and "responses" in current:
                    current["responses"].cancel()  # the server sees the request cancelled and stops generating

        stream._pieces = pieces()
        stream._cancel = lambda: current["responses"].cancel() if "responses" in current else None
        return stream
