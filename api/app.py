"""The OpenAI-compatible HTTP API: FastAPI routes in front of Triton's generator models, talking to Triton with
the project's own async gRPC client (its deadlines, retries before the first token and metrics).

`create_app(options)` builds the ASGI app; `tuneship.api.server` runs it with uvicorn. Everything a caller sees
is OpenAI's shape: the answers, the streamed chunks (server-sent events ending in `data: [DONE]`) and the errors.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from tuneship.api.catalog import Catalog, ServedModel
from tuneship.api.errors import ApiError, from_triton, model_not_found
from tuneship.api.events import EventStream, sse
from tuneship.api.limits import SCOPE_KEY, BodyLimit, RequestCounter
from tuneship.api.metrics import ApiMetrics
from tuneship.api.options import ApiOptions
from tuneship.api.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    chat_messages,
    completion_prompt,
    finish_reason,
    generation_params,
)
from tuneship.api.tools import ToolCall, ToolPlan, tool_plan
from tuneship.client import AsyncGenerator, AsyncTextStream, AsyncTritonClient, ClientOptions, Generation, TritonError

OWNER = "tuneship"
CHAT, COMPLETIONS = "chat.completions", "completions"


# Deadline of the API's own calls to Triton (readiness, the model list): a hung server must not hang /health or
# /v1/models for a generation's deadline.
CONTROL_TIMEOUT_S = 10.0


class _State:
    def __init__(self, options: ApiOptions, client: AsyncTritonClient, control: AsyncTritonClient,
                 metrics: ApiMetrics) -> None:
        self.options = options
        self.client = client  # generations: the request deadline
        self.control = control  # readiness and the model list: a short one
        self.catalog = Catalog(control, options.repository, options.models_refresh_s)
        self.metrics = metrics


def create_app(options: ApiOptions) -> FastAPI:
    """The app for one Triton server (`options.url`); its gRPC client is made when the app starts, on the
    server's event loop."""
    holder: dict[str, _State] = {}
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = AsyncTritonClient(options.url, ClientOptions(timeout_s=options.request_timeout_s))
        control = AsyncTritonClient(options.url, ClientOptions(timeout_s=CONTROL_TIMEOUT_S))
        holder["state"] = _State(options, client, control, metrics)
        try:
            yield
        finally:
            await client.close()
            await control.close()

    app = FastAPI(title="tuneship OpenAI-compatible API", version="1", lifespan=lifespan,
                  description="OpenAI's chat and text completions in front of Triton's generator models.")
    app.add_middleware(RequestCounter, metrics=metrics, endpoints=_ENDPOINTS)
    app.add_middleware(BodyLimit, max_bytes=options.max_body_bytes)  # added last: runs first

    def state() -> _State:
        return holder["state"]

    async def authorized(request: Request) -> None:
        if options.api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), options.api_key.encode()):
            raise ApiError(401, "Incorrect or missing API key: send 'Authorization: Bearer KEY'",
                           type="authentication_error", code="invalid_api_key")

    _install_error_handlers(app)

    @app.get("/health", include_in_schema=False)
    async def health() -> Response:
        """Ready when Triton is: a probe that passes while the server behind it is down would be a lie."""
        try:
            ready = await state().control.is_server_ready()
        except TritonError:
            ready = False
        return JSONResponse({"status": "ok" if ready else "unavailable"}, status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_page() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", dependencies=[Depends(authorized)])
    async def list_models() -> dict[str, Any]:
        models = await _served(state())
        return {"object": "list", "data": [_model_card(m) for m in models.values()]}

    @app.get("/v1/models/{model_id:path}", dependencies=[Depends(authorized)])
    async def get_model(model_id: str) -> dict[str, Any]:
        return _model_card(await _resolve(state(), model_id))

    @app.post("/v1/chat/completions", dependencies=[Depends(authorized)])
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        return await _complete(state(), request, CHAT, body, lambda: chat_messages(body, options.max_prompt_chars))

    @app.post("/v1/completions", dependencies=[Depends(authorized)])
    async def completions(body: CompletionRequest, request: Request) -> Response:
        return await _complete(state(), request, COMPLETIONS, body,
                               lambda: completion_prompt(body, options.max_prompt_chars))

    return app


_ENDPOINTS = {"/v1/chat/completions": CHAT, "/v1/completions": COMPLETIONS, "/v1/models": "models"}


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> Response:
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers())

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> Response:
        problem: dict[str, Any] = dict(error.errors()[0]) if error.errors() else {"loc": (), "msg": "invalid"}
        where = [str(part) for part in problem.get("loc", ()) if part != "body"]
        param = ".".join(where) or None
        kind = problem.get("type", "")
        if kind == "extra_forbidden":
            message = f"{param}: not a parameter this server takes (unsupported or misspelled)"
        elif kind == "json_invalid":
            message = f"the body is not valid JSON ({problem.get('ctx', {}).get('error', 'parse error')})"
            param = None
        elif kind == "missing":
            message = f"{param}: required"
        else:
            message = f"{param}: {problem.get('msg', 'invalid value')}" if param else str(problem.get("msg"))
        code = "unsupported_parameter" if kind == "extra_forbidden" else "invalid_value"
        return JSONResponse(ApiError(400, message, param=param, code=code).body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        message = {404: f"no such endpoint: {request.method} {request.url.path}",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(error.status_code,
                                                                                     str(error.detail))
        body = ApiError(error.status_code, message).body()
        return JSONResponse(body, status_code=error.status_code, headers=getattr(error, "headers", None))


async def _served(state: _State) -> dict[str, ServedModel]:
    try:
        return await state.catalog.models()
    except TritonError as error:
        raise from_triton(error, "the model list") from None


async def _resolve(state: _State, model_id: str) -> ServedModel:
    try:
        served = await state.catalog.resolve(model_id)
    except TritonError as error:
        raise from_triton(error, model_id) from None
    if served is None:
        raise model_not_found(model_id, sorted(await _served(state)))
    return served


def _model_card(model: ServedModel) -> dict[str, Any]:
    card: dict[str, Any] = {"id": model.id, "object": "model", "created": model.created, "owned_by": OWNER}
    if model.adapter is not None:
        card["parent"] = model.model
    return card


async def _complete(state: _State, request: Request, endpoint: str,
                    body: ChatCompletionRequest | CompletionRequest, prompt: Callable[[], Any]) -> Response:
    """The model first (404 before any 400 about the parameters), then the parameters and the prompt."""
    served = await _resolve(state, body.model)
    params = generation_params(body)
    include_usage = body.stream_options.include_usage if body.stream_options else False
    plan = tool_plan(body.tools, body.tool_choice) if isinstance(body, ChatCompletionRequest) else None
    return await _answer(state, request, endpoint, served, prompt(), params, body.stream, include_usage, plan)


async def _answer(state: _State, request: Request, endpoint: str, served: ServedModel, prompt: Any,
                  params: dict[str, Any], streaming: bool, include_usage: bool,
                  plan: ToolPlan | None = None) -> Response:
    request.scope.get(SCOPE_KEY, {})["model"] = served.id
    arrived = time.perf_counter()
    if served.adapter is not None:
        params["adapter"] = served.adapter
    generator = AsyncGenerator(state.client, served.model)
    stream = generator.open(prompt, stream=streaming, timeout_s=state.options.request_timeout_s, **params)
    pieces = aiter(stream)
    reply = _Reply(endpoint, served.id, include_usage, plan)
    # Nothing is sent before the first piece (or, not streaming, the whole answer: the server sends it as one): a
    # refusal (queue full, prompt too long, bad pattern) still gets its HTTP status; only a failure after the
    # first token has to travel inside the stream.
    async def gathered() -> str:
        return "".join([piece async for piece in pieces])

    try:
        first = await _unless_gone(request, anext(pieces, None) if streaming else gathered(), stream, state,
                                   endpoint, served.id)
    except TritonError as error:
        stream.cancel()  # past its deadline, the server may still be generating: free the slot
        raise from_triton(error, served.id) from None
    state.metrics.time_to_first_token.labels(endpoint, served.id).observe(time.perf_counter() - arrived)
    if not streaming:
        generation = stream.generation
        assert generation is not None
        _count_tokens(state, served.id, generation)
        state.metrics.duration.labels(endpoint, served.id).observe(time.perf_counter() - arrived)
        return JSONResponse(reply.whole(first, generation))

    async def events() -> AsyncIterator[str]:
        finished = False
        try:
            if plan is not None and (plan.always_calls or (first or "").lstrip().startswith("{")):
                # A tool call: whole before it is sent (its arguments are parsed into the call's fields).
                text = (first or "") + "".join([piece async for piece in pieces])
                generation = stream.generation
                assert generation is not None
                finished = True
                _count_tokens(state, served.id, generation)
                yield sse(reply.opening()) + reply.called(text)
                yield sse(reply.closing(generation))
            else:
                # The role and the first piece leave in one write: the caller's first token is not a second,
                # smaller packet behind the first.
                yield sse(reply.opening()) + (reply.piece(first) if first is not None else "")
                if first is not None:
                    async for piece in pieces:
                        yield reply.piece(piece)
                generation = stream.generation
                assert generation is not None
                finished = True
                _count_tokens(state, served.id, generation)
                yield sse(reply.closing(generation))
            if include_usage:
                yield sse(reply.usage_chunk(generation))
        except TritonError as error:
            stream.cancel()
            finished = True
            yield sse(from_triton(error, served.id).body())
        finally:
            if not finished:  # the caller went away (or the server is stopping): free the slot now
                stream.cancel()
                state.metrics.disconnects.labels(endpoint, served.id).inc()
            state.metrics.duration.labels(endpoint, served.id).observe(time.perf_counter() - arrived)
        yield "data: [DONE]\n\n"

    return EventStream(events())


async def _unless_gone(request: Request, waiting: Awaitable[Any], stream: AsyncTextStream, state: _State,
                       endpoint: str, model_id: str) -> Any:
    """`waiting`'s result, unless the caller disconnects first: then its generation is cancelled."""
    task = asyncio.ensure_future(waiting)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    stream.cancel()
    task.cancel()
    state.metrics.disconnects.labels(endpoint, model_id).inc()
    raise ApiError(499, "the caller closed the connection", code="client_closed_request")


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _count_tokens(state: _State, model_id: str, generation: Generation) -> None:
    tokens = state.metrics.tokens
    tokens.labels(model_id, "completion").inc(generation.tokens)
    tokens.labels(model_id, "prompt").inc(generation.prompt_tokens or 0)
    tokens.labels(model_id, "cached_prompt").inc(generation.cached_prompt_tokens or 0)


class _Reply:
    """OpenAI's response objects for one answer."""

    def __init__(self, endpoint: str, model_id: str, include_usage: bool = False,
                 plan: ToolPlan | None = None) -> None:
        self.chat = endpoint == CHAT
        self.include_usage = include_usage
        self.plan = plan
        self.calls: list[ToolCall] | None = None  # what the answer called, once read
        self._around: tuple[str, str] | None = None
        self.id = ("chatcmpl-" if self.chat else "cmpl-") + uuid.uuid4().hex
        self.model = model_id
        self.created = int(time.time())
        self.object = "chat.completion" if self.chat else "text_completion"

    def _head(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "system_fingerprint": None}

    def _reason(self, generation: Generation) -> str:
        return "tool_calls" if self.calls else finish_reason(generation.finish_reason)

    def whole(self, text: str, generation: Generation) -> dict[str, Any]:
        self.calls = self.plan.parse(text) if self.plan is not None else None
        reason = self._reason(generation)
        if self.chat:
            message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
            if self.calls:
                message.update(content=None, tool_calls=[c.as_openai() for c in self.calls])
            choice: dict[str, Any] = {"index": 0, "message": message, "logprobs": None, "finish_reason": reason}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
        return {**self._head(self.object), "choices": [choice], "usage": usage(generation)}

    def _chunk(self, delta: dict[str, Any] | str, reason: str | None) -> dict[str, Any]:
        if self.chat:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
            chunk = {**self._head("chat.completion.chunk"), "choices": [choice]}
        else:
            chunk = {**self._head("text_completion"), "choices": [{"index": 0, "text": delta, "logprobs": None,
                                                                    "finish_reason": reason}]}
        if self.include_usage:
            chunk["usage"] = None  # OpenAI: every chunk but the last carries usage null when usage is asked for
        return chunk

    def opening(self) -> dict[str, Any]:
        return self._chunk({"role": "assistant", "content": ""} if self.chat else "", None)

    def piece(self, text: str) -> str:
        """One piece's event: the chunk around it is encoded once per answer, only the text per piece."""
        if self._around is None:
            marker = "\u0000piece\u0000"
            encoded = sse(self._chunk({"content": marker} if self.chat else marker, None))
            escaped = json.dumps(marker)[1:-1]
            before, after = encoded.split(escaped)
            self._around = (before, after)
        before, after = self._around
        return before + json.dumps(text, ensure_ascii=False)[1:-1] + after

    def called(self, text: str) -> str:
        """A streamed answer read whole: its calls as one tool_calls delta (or, cut short, its text)."""
        assert self.plan is not None
        self.calls = self.plan.parse(text)
        if not self.calls:
            return self.piece(text)
        return sse(self._chunk({"tool_calls": [c.as_openai(i) for i, c in enumerate(self.calls)]}, None))

    def closing(self, generation: Generation) -> dict[str, Any]:
        return self._chunk({} if self.chat else "", self._reason(generation))

    def usage_chunk(self, generation: Generation) -> dict[str, Any]:
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        return {**self._head(obj), "choices": [], "usage": usage(generation)}


def usage(generation: Generation) -> dict[str, Any]:
    prompt = generation.prompt_tokens or 0
    return {"prompt_tokens": prompt, "completion_tokens": generation.tokens,
            "total_tokens": prompt + generation.tokens,
            "prompt_tokens_details": {"cached_tokens": generation.cached_prompt_tokens or 0}}

