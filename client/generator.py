"""Task-level API for text generation: prompts or chat messages in, text out, streamed piece by piece.

Talks to tuneship's decoupled generator model (the input and output names of Triton's vLLM and TensorRT-LLM
backends: `text_input` or `messages`, `stream`, sampling inputs; `text_output`) over gRPC's bidirectional
stream, the only way Triton's gRPC endpoint serves decoupled models. The pieces are the server's decoded
text (its tokenizer stream keeps the spacing right across token boundaries), so `"".join(pieces)` is the text.

Everything below the task is the protocol client's `stream_infer`: deadlines, typed errors, the retry policy and
budget (a failure before the first response is retried, never one after it: the caller has seen part of an
answer) and the request metrics; this module adds the generation metrics (time to first token, decode speed).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tuneship.client.aio_client import AsyncTritonClient
from tuneship.client.errors import InvalidInputError
from tuneship.client.feedback import GenerationRecord, GenerationSink, record_generation_safely
from tuneship.client.grpc_client import TritonClient
from tuneship.client.metrics import ClientMetrics
from tuneship.client.results import InferResult
from tuneship.serving.params import InvalidParams, SamplingParams

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
    prompt_tokens: int | None = None  # None: a server that does not say
    cached_prompt_tokens: int | None = None  # of prompt_tokens, served from a kept cache (a session's turns)
    log_id: str | None = None  # the prediction log's id of this generation (rate or correct it by this id)

    @property
    def tokens_per_second(self) -> float:
        """Decode speed after the first token (the prompt's prefill excluded)."""
        decoding = self.seconds - self.time_to_first_token_s
        return (self.tokens - 1) / decoding if self.tokens > 1 and decoding > 0 else 0.0


# The keyword arguments of generate() / stream() -> SamplingParams' fields (the server's names, vLLM's).
PARAMETERS = {"max_tokens": "max_tokens", "min_tokens": "min_tokens", "temperature": "temperature", "top_p": "top_p",
              "top_k": "top_k", "repetition_penalty": "repetition_penalty", "seed": "random_seed", "stop": "stop",
              "session": "session_id", "adapter": "adapter", "raw": "raw", "stream_interval_ms": "stream_interval_ms",
              "cache_salt": "cache_salt"}
# A constrained answer: the parameter here -> the server's (vLLM's) name.
CONSTRAINTS = {"choices": "guided_choice", "regex": "guided_regex", "json_schema": "guided_json",
               "grammar": "guided_grammar"}
ROLES = ("system", "user", "assistant", "tool")


def wire_options(params: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments by the server's names; an unknown one is refused, naming the known ones."""
    wire: dict[str, Any] = {}
    for name, value in params.items():
        if value is None:
            continue
        field = PARAMETERS.get(name) or CONSTRAINTS.get(name)
        if field is None:
            raise InvalidInputError(f"unknown generation parameter {name!r}; use "
                                    f"{', '.join([*PARAMETERS, *CONSTRAINTS])}")
        wire[field] = value
    return wire


def sampling_params(params: Mapping[str, Any]) -> SamplingParams:
    """The keyword arguments as SamplingParams, checked with the server's words before anything is sent (a value
    one side refuses, every side refuses: the server and the OpenAI-compatible API build the same type)."""
    wire = wire_options(params)
    try:
        return SamplingParams.from_wire(wire)
    except InvalidParams as error:
        client_name = next((k for k, v in {**PARAMETERS, **CONSTRAINTS}.items() if v == error.field), error.field)
        prefix = f"{client_name}: " if client_name != error.field else ""
        raise InvalidInputError(f"{prefix}{error}") from None


def _inputs(prompt: Prompt, stream: bool, params: Mapping[str, Any]) -> dict[str, np.ndarray[Any, Any]]:
    def one(value: Any, dtype: Any) -> np.ndarray[Any, Any]:
        return np.array([value], dtype=dtype)

    tensors: dict[str, np.ndarray[Any, Any]] = {}
    if isinstance(prompt, str):
        if not prompt.strip():
            raise InvalidInputError("the prompt is empty")
        tensors["text_input"] = one(prompt.encode("utf-8"), np.object_)
    else:
        messages = [dict(m) for m in prompt]
        if not messages or any(m.get("role") not in ROLES or not isinstance(m.get("content", ""), str)
                               for m in messages):
            raise InvalidInputError(f"messages must be a non-empty list of {{'role': {'|'.join(ROLES)}, "
                                    "'content': text}")
        tensors["messages"] = one(json.dumps(messages).encode("utf-8"), np.object_)
    tensors["stream"] = one(stream, np.bool_)
    wire = sampling_params(params).to_wire()
    if wire:
        tensors["sampling_parameters"] = one(json.dumps(wire).encode("utf-8"), np.object_)
    return tensors


# Every output the model has (None): token counts a newer generator adds reach the client, and an older one's
# missing counts are not an error.
_OUTPUTS = None
COUNTS = ("completion_tokens", "prompt_tokens", "cached_prompt_tokens")


def _counts(result: InferResult) -> dict[str, int]:
    return {name: int(value.reshape(-1)[0]) for name in COUNTS
            if (value := result.outputs.get(name)) is not None and value.size}


def _read(result: InferResult) -> tuple[str, str | None]:
    """(text piece, finish reason) of one streamed response."""
    raw = result.outputs.get("text_output")
    piece = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in raw.reshape(-1)).decode(
        "utf-8", errors="replace") if raw is not None else ""
    reason = result.outputs.get("finish_reason")
    if reason is None or not reason.size:
        return piece, None
    value = reason.reshape(-1)[0]
    return piece, value.decode() if isinstance(value, bytes) else str(value)


def _logged(log: GenerationSink | None, model: str, prompt: Prompt, params: Mapping[str, Any],
            result: InferResult, generation: Generation) -> Generation:
    """The generation with its log id, once the opt-in log has it (finished answers only: a cancelled one has
    no answer to rate)."""
    if log is None or generation.finish_reason not in ("stop", "length"):
        return generation
    record = GenerationRecord(
        model=model, version=result.version or None,
        prompt=prompt if isinstance(prompt, str) else [dict(m) for m in prompt], answer=generation.text,
        finish_reason=generation.finish_reason, tokens=generation.tokens, adapter=params.get("adapter"),
        parameters={k: v for k, v in params.items() if k != "adapter"})
    log_id = record_generation_safely(log, record)
    return replace(generation, log_id=log_id) if log_id is not None else generation


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

    def finish(self, reason: str | None, counts: dict[str, int]) -> Generation:
        seconds = time.perf_counter() - self.started
        first = self.first if self.first is not None else seconds
        text = "".join(self.pieces)
        count = counts.get("completion_tokens")
        generation = Generation(text=text, tokens=count if count is not None else len(self.pieces),
                                finish_reason=reason or "stop", time_to_first_token_s=first, seconds=seconds,
                                prompt_tokens=counts.get("prompt_tokens"),
                                cached_prompt_tokens=counts.get("cached_prompt_tokens"))
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
        client: the protocol-level client (its URL, TLS, headers, deadline, retry policy, budget and metrics
            apply to every stream, as to any call).
        model: the generator model's name on the server.
        max_tokens, temperature: defaults for every call (None: the server's).
        log: where finished generations are logged for feedback (`tuneship.monitor.PredictionLog`), or None.
    """

    def __init__(self, client: TritonClient, model: str = "chat", max_tokens: int | None = None,
                 temperature: float | None = None, log: GenerationSink | None = None) -> None:
        super().__init__(model, max_tokens, temperature)
        self.client = client
        self.log = log  # opt-in: finished generations go to a feedback store (tuneship.monitor.PredictionLog)

    def close(self) -> None:
        """Nothing of its own to close: the streams' connections belong to the client (`client.close()`)."""

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        merged = self.params(params)
        inputs = _inputs(prompt, streaming, merged)
        tracker = _Tracker(self.model, self.client.metrics)
        responses = self.client.stream_infer(self.model, inputs, outputs=_OUTPUTS, timeout_s=timeout_s,
                                             validate=False)

        def pieces() -> Iterator[str]:
            for result in responses:
                piece, reason = _read(result)
                if piece:
                    tracker.piece(piece)
                    yield piece
                if result.final:  # the protocol stream ends after it (and closes its call's books)
                    stream.generation = _logged(self.log, self.model, prompt, merged, result,
                                                tracker.finish(reason, _counts(result)))

        stream = TextStream(pieces(), tracker, responses.cancel)
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
                 temperature: float | None = None, log: GenerationSink | None = None) -> None:
        super().__init__(model, max_tokens, temperature)
        self.client = client
        self.log = log  # written from a worker thread: a store's round trip never holds the event loop

    async def generate(self, prompt: Prompt, *, timeout_s: float | None = None, **params: Any) -> Generation:
        stream = self._open(prompt, False, timeout_s, params)
        async for _ in stream:
            pass
        assert stream.generation is not None
        return stream.generation

    def stream(self, prompt: Prompt, *, timeout_s: float | None = None, **params: Any) -> AsyncTextStream:
        return self._open(prompt, True, timeout_s, params)

    def open(self, prompt: Prompt, *, stream: bool, timeout_s: float | None = None,
             **params: Any) -> AsyncTextStream:
        """A generation to iterate either way: streamed piece by piece (`stream=True`) or, with `stream=False`,
        the whole text as one piece; cancellable and with `.generation` at its end either way (a server in front,
        like the OpenAI-compatible API, serves both kinds of its own callers with it)."""
        return self._open(prompt, stream, timeout_s, params)

    def _open(self, prompt: Prompt, streaming: bool, timeout_s: float | None,
              params: Mapping[str, Any]) -> AsyncTextStream:
        merged = self.params(params)
        inputs = _inputs(prompt, streaming, merged)
        tracker = _Tracker(self.model, self.client.metrics)
        responses = self.client.stream_infer(self.model, inputs, outputs=_OUTPUTS, timeout_s=timeout_s,
                                             validate=False)
        stream = AsyncTextStream()

        async def pieces() -> AsyncIterator[str]:
            async for result in responses:
                piece, reason = _read(result)
                if piece:
                    tracker.piece(piece)
                    yield piece
                if result.final:  # the protocol stream ends after it (and closes its call's books)
                    generation = tracker.finish(reason, _counts(result))
                    if self.log is not None:
                        generation = await asyncio.to_thread(_logged, self.log, self.model, prompt, merged, result,
                                                             generation)
                    stream.generation = generation

        stream._pieces = pieces()
        stream._cancel = responses.cancel
        return stream
