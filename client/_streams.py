"""Streamed inference (gRPC's bidirectional stream, the only way into a decoupled model), sync and asyncio.

One request goes out, responses come back until the one Triton flags final. The call's retry plan applies as
for `infer`: a failure before the first response is retried inside the deadline and the retry budget (the caller
has seen nothing), never one after it (the caller has seen part of an answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import grpc
from tritonclient.utils import InferenceServerException

from tuneship.client._calls import CallPlan, requested_outputs
from tuneship.client.errors import DeadlineExceededError, TritonError, from_triton_exception
from tuneship.client.results import InferResult

if TYPE_CHECKING:
    from tuneship.client.aio_client import AsyncTritonClient
    from tuneship.client.grpc_client import TritonClient

IDLE_STREAM_CONNECTIONS = 4  # connections a sync client keeps for its next streams
_CANCELLED = object()


def stream_result(model: str, response: Any) -> InferResult:
    """One streamed response; outputs the response does not carry (an empty final response) are left out."""
    message = response.get_response()
    final_parameter = message.parameters.get("triton_final_response")
    outputs = {}
    for output in message.outputs:
        array = response.as_numpy(output.name)
        if array is not None:
            outputs[output.name] = array
    return InferResult(model=model, version=str(message.model_version), outputs=outputs, request_id=str(message.id),
                       final=bool(final_parameter.bool_param) if final_parameter is not None else True)


def typed(error: Any) -> TritonError:
    if isinstance(error, TritonError):
        return error
    if isinstance(error, (InferenceServerException, grpc.RpcError)):
        return from_triton_exception(error)
    return TritonError(str(error))


class _Books:
    """What the sync and asyncio streams do alike with each response of one call: a failure before the first
    response is retried within the plan (its delay is returned), any other is raised; the final response closes
    the plan's books."""

    def __init__(self, plan: CallPlan, model: str) -> None:
        self.plan = plan
        self.model = model
        self.seen = False
        self.ended = False

    def failed(self, error: Any) -> float:
        failure = typed(error)
        delay = None if self.seen else self.plan.retry_delay(failure)
        if delay is None:
            raise self.plan.final_error(failure) from (error if isinstance(error, BaseException) else None)
        return delay

    def answered(self, result: Any) -> InferResult:
        self.seen = True
        item = stream_result(self.model, result)
        if item.final:
            self.ended = True
            self.plan.succeeded()
        return item


class InferStream:
    """The responses of one streamed request, in order; iterate it, or `cancel()` it from any thread."""

    def __init__(self, responses: Iterator[InferResult], cancel: Callable[[], None]) -> None:
        self._responses = responses
        self._cancel = cancel

    def __iter__(self) -> Iterator[InferResult]:
        return self._responses

    def __next__(self) -> InferResult:
        return next(self._responses)

    def cancel(self) -> None:
        """Cancel the request: Triton marks it cancelled (the model stops generating) and iteration ends."""
        self._cancel()


class AsyncInferStream:
    """The asyncio twin of InferStream: `async for response in stream`."""

    def __init__(self, responses: AsyncIterator[InferResult], cancel: Callable[[], None]) -> None:
        self._responses = responses
        self._cancel = cancel

    def __aiter__(self) -> AsyncIterator[InferResult]:
        return self._responses

    async def __anext__(self) -> InferResult:
        return await self._responses.__anext__()

    def cancel(self) -> None:
        self._cancel()


def _request_kwargs(version: str, outputs: Sequence[str] | None, request_id: str,
                    parameters: dict[str, Any] | None) -> dict[str, Any]:
    return {"model_version": version, "request_id": request_id, "parameters": parameters,
            "outputs": requested_outputs(outputs),
            "enable_empty_final_response": True}


def open_stream(client: TritonClient, plan: CallPlan, model: str, prepare: Callable[[], list[Any]],
                version: str, outputs: Sequence[str] | None, request_id: str,
                parameters: dict[str, Any] | None) -> InferStream:
    """A sync stream. tritonclient's sync client runs one stream per connection, so each stream takes a
    connection from the client's idle ones (or a new one) and gives it back when it ends cleanly."""
    lock = threading.Lock()
    current: dict[str, Any] = {}
    cancelled = threading.Event()

    def release(cancel: bool) -> None:
        with lock:
            channel = current.pop("channel", None)
        if channel is not None:
            channel.stop_stream(cancel_requests=cancel)
            client._release_stream_connection(channel, reuse=not cancel)

    def cancel() -> None:
        plan.cancelled = True
        cancelled.set()
        with lock:
            answers = current.get("answers")
        if answers is not None:
            answers.put((None, _CANCELLED))
        release(cancel=True)
        if not getattr(generator, "gi_running", False):  # suspended between responses: close its books now
            generator.close()

    def responses() -> Generator[InferResult, None, None]:
        with plan.tracked():
            request = prepare()  # inside: a request refused before it is sent counts in the metrics too
            books = _Books(plan, model)
            while True:
                remaining = plan.start_attempt()
                answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
                channel = client._stream_connection()
                with lock:
                    current.update(channel=channel, answers=answers)
                delay: float | None = None
                try:
                    if cancelled.is_set():
                        return
                    channel.start_stream(callback=lambda result, error, answers=answers: answers.put((result, error)),
                                         stream_timeout=remaining, headers=dict(client.options.headers) or None)
                    try:
                        channel.async_stream_infer(model, request, **_request_kwargs(version, outputs, request_id,
                                                                                      parameters))
                    except InferenceServerException as raw:  # the stream failed before the request went out
                        if answers.empty():
                            answers.put((None, raw))
                    while True:
                        left = None if plan.deadline is None else plan.deadline - time.monotonic()
                        if left is not None and left <= 0:
                            raise DeadlineExceededError(
                                f"stream from {model!r} exceeded its {plan.timeout_s:g}s deadline")
                        try:
                            result, error = answers.get(timeout=left)
                        except queue.Empty:
                            continue
                        if error is _CANCELLED:
                            return
                        if error is not None:
                            delay = books.failed(error)
                            break
                        yield books.answered(result)
                        if books.ended:
                            return
                finally:
                    release(cancel=not books.ended)
                assert delay is not None
                time.sleep(delay)

    generator = responses()
    return InferStream(generator, cancel)


def open_async_stream(client: AsyncTritonClient, plan: CallPlan, model: str,
                      prepare: Callable[[], Awaitable[list[Any]]], version: str, outputs: Sequence[str] | None,
                      request_id: str, parameters: dict[str, Any] | None) -> AsyncInferStream:
    """An asyncio stream: the aio client multiplexes streams over its one channel."""
    current: dict[str, Any] = {}

    def cancel() -> None:
        plan.cancelled = True
        current["cancelled"] = True
        call = current.get("call")
        if call is not None:
            call.cancel()
        if not getattr(generator, "ag_running", True) and getattr(generator, "ag_frame", None) is not None:
            # Suspended between responses: finish its books ("cancelled") on the caller's loop. A running one
            # sees its call cancelled and returns by itself.
            with contextlib.suppress(RuntimeError):  # no loop here (another thread): the garbage collector closes it
                current["closing"] = asyncio.get_running_loop().create_task(close_quietly())

    async def close_quietly() -> None:
        # The caller may drain the stream after cancelling it: then it is running when this task starts, and
        # its own iteration sees the cancelled call and returns.
        with contextlib.suppress(RuntimeError):
            await generator.aclose()

    async def responses() -> AsyncGenerator[InferResult, None]:
        with plan.tracked():
            request = await prepare()
            books = _Books(plan, model)
            while True:
                remaining = plan.start_attempt()
                if current.get("cancelled"):
                    return

                async def one_request() -> AsyncIterator[dict[str, Any]]:
                    yield {"model_name": model, "inputs": request,
                           **_request_kwargs(version, outputs, request_id, parameters)}

                call = client._client.stream_infer(one_request(), stream_timeout=remaining,
                                                   headers=dict(client.options.headers) or None)
                current["call"] = call
                delay: float | None = None
                try:
                    iterator = call.__aiter__()
                    while True:
                        left = None if plan.deadline is None else plan.deadline - time.monotonic()
                        if left is not None and left <= 0:
                            raise DeadlineExceededError(
                                f"stream from {model!r} exceeded its {plan.timeout_s:g}s deadline")
                        try:
                            # A deadline per wait, not a timeout scope around the yields: the caller's own awaits
                            # between responses must not be cancelled by it.
                            result, error = await asyncio.wait_for(iterator.__anext__(), left)
                        except StopAsyncIteration:
                            if current.get("cancelled"):
                                return
                            error = TritonError(f"the stream from {model!r} ended without a final response")
                            result = None
                        except TimeoutError:
                            raise DeadlineExceededError(
                                f"stream from {model!r} exceeded its {plan.timeout_s:g}s deadline") from None
                        except asyncio.CancelledError:
                            if current.get("cancelled"):
                                return
                            raise
                        except grpc.RpcError as raw:  # the stream itself failed (server gone, say)
                            result, error = None, raw
                        if error is not None:
                            if current.get("cancelled"):
                                return
                            delay = books.failed(error)
                            break
                        yield books.answered(result)
                        if books.ended:
                            return
                finally:
                    if not books.ended:
                        call.cancel()  # the server sees the request cancelled and stops generating
                assert delay is not None
                await asyncio.sleep(delay)

    generator = responses()
    return AsyncInferStream(generator, cancel)
