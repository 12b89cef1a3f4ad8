"""The request bodies of OpenAI's chat and text completions, as this API takes them (pydantic, so FastAPI validates
them and publishes their schema), and what each field becomes for the generator.

Unknown fields are refused (400, naming the field): an application that asks for something this server does not
do is told so instead of getting an answer that silently ignored it. Fields OpenAI defines but the engine cannot
honour (`n` > 1, `logprobs`, tools, penalties without an equivalent) are accepted only at their neutral value.
The constraints of the generation engine use vLLM's names for its extra fields: `guided_choice`, `guided_regex`,
`guided_json`; `top_k`, `min_tokens`, `repetition_penalty` too; `session_id` keeps a conversation's cache.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tuneship.api.errors import ApiError, bad_parameter, unsupported
from tuneship.api.tools import call_text, tool_plan, with_tools
from tuneship.client import wire_options
from tuneship.serving.params import InvalidParams, SamplingParams

MAX_STOPS = 16


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(_Strict):
    include_usage: bool = False


class JsonSchemaFormat(_Strict):
    name: str = Field(min_length=1, max_length=64)
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None  # an assistant's calls (api/tools.py)
    tool_call_id: str | None = None  # which call a tool message answers


class _Sampling(_Strict):
    """What chat and text completions share."""

    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(default=None, max_length=256)
    n: int | None = Field(default=None, ge=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    # vLLM's extra fields, and the engine's.
    top_k: int | None = None  # checked by SamplingParams, as the client and the server check it
    min_tokens: int | None = Field(default=None, ge=0)
    repetition_penalty: float | None = Field(default=None, gt=0)
    guided_choice: list[str] | None = None
    guided_regex: str | None = None
    guided_json: dict[str, Any] | str | None = None
    session_id: str | None = Field(default=None, min_length=1, max_length=128)
    cache_salt: str | None = Field(default=None, min_length=1, max_length=128)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    service_tier: str | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str]
    logprobs: int | None = Field(default=None, ge=0)
    echo: bool | None = None
    best_of: int | None = Field(default=None, ge=1)
    suffix: str | None = None
    # A chat model reads a plain prompt as one user turn (its template applied); `raw` sends it as it is.
    raw: bool | None = None


def _refuse_unsupported(request: _Sampling) -> None:
    if request.n not in (None, 1):
        raise unsupported("n", "one choice per request (n = 1); send several requests for several answers")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(request, name):
            raise unsupported(name, "the engine has no additive penalty; use repetition_penalty (multiplicative, "
                              "> 1 discourages repeats) instead")
    if request.logit_bias:
        raise unsupported("logit_bias", "the engine cannot bias single tokens; constrain the answer with "
                          "guided_choice, guided_regex or response_format instead")
    if request.stream_options is not None and not request.stream:
        raise bad_parameter("stream_options", "stream_options is only allowed when stream is true")
    if isinstance(request, ChatCompletionRequest):
        if request.logprobs or request.top_logprobs:
            raise unsupported("logprobs" if request.logprobs else "top_logprobs", "log probabilities are not "
                              "returned by this server")
        if request.functions or request.function_call not in (None, "none"):
            raise unsupported("functions" if request.functions else "function_call",
                              "the legacy functions API is not served; send tools and tool_choice")
        if request.store:
            raise unsupported("store", "this server does not store completions")
        if request.service_tier not in (None, "auto", "default"):
            raise unsupported("service_tier", "one tier here ('default')")
    else:
        assert isinstance(request, CompletionRequest)
        if request.logprobs:
            raise unsupported("logprobs", "log probabilities are not returned by this server")
        if request.echo:
            raise unsupported("echo", "the prompt is not echoed back")
        if request.best_of not in (None, 1):
            raise unsupported("best_of", "one candidate per request (best_of = 1)")
        if request.suffix:
            raise unsupported("suffix", "insertion (a suffix after the completion) is not supported")


def _stops(stop: str | list[str] | None) -> list[str] | None:
    if stop is None:
        return None
    stops = [stop] if isinstance(stop, str) else stop
    if len(stops) > MAX_STOPS:
        raise bad_parameter("stop", f"at most {MAX_STOPS} stop sequences, got {len(stops)}")
    if any(not s for s in stops):
        raise bad_parameter("stop", "a stop sequence must not be empty")
    return stops or None


def _constraint(request: _Sampling) -> dict[str, Any]:
    """The answer's constraint for the `Generator`: one of choices, regex, json_schema."""
    given: dict[str, Any] = {}
    if request.guided_choice is not None:
        if not request.guided_choice or any(not c for c in request.guided_choice):
            raise bad_parameter("guided_choice", "guided_choice must be a non-empty list of non-empty strings")
        given["guided_choice"] = ("choices", request.guided_choice)
    if request.guided_regex is not None:
        if not request.guided_regex:
            raise bad_parameter("guided_regex", "guided_regex must be a non-empty regular expression")
        given["guided_regex"] = ("regex", request.guided_regex)
    if request.guided_json is not None:
        given["guided_json"] = ("json_schema", request.guided_json)
    response_format = getattr(request, "response_format", None)
    if response_format is not None and response_format.type != "text":
        if response_format.type == "json_object":
            given["response_format"] = ("json_schema", {"type": "object"})
        else:
            if response_format.json_schema is None or response_format.json_schema.schema_ is None:
                raise bad_parameter("response_format", "response_format json_schema needs json_schema.schema")
            given["response_format"] = ("json_schema", response_format.json_schema.schema_)
    plan = tool_plan(request.tools, request.tool_choice) if isinstance(request, ChatCompletionRequest) else None
    if plan is not None:
        given["tool_choice"] = next(iter(plan.constraint().items()))
    if len(given) > 1:
        raise bad_parameter(sorted(given)[1], f"give one constraint per request, not {' and '.join(sorted(given))}")
    return dict(given.values())


def generation_params(request: ChatCompletionRequest | CompletionRequest) -> dict[str, Any]:
    """The request's sampling and constraints as `Generator.generate`'s keyword arguments."""
    _refuse_unsupported(request)
    params: dict[str, Any] = {}
    max_tokens = request.max_tokens
    if isinstance(request, ChatCompletionRequest) and request.max_completion_tokens is not None:
        if max_tokens is not None and max_tokens != request.max_completion_tokens:
            raise bad_parameter("max_completion_tokens", "max_tokens and max_completion_tokens disagree; give one")
        max_tokens = request.max_completion_tokens
    if max_tokens is None and isinstance(request, CompletionRequest):
        max_tokens = 16  # OpenAI's default for text completions
    if request.min_tokens is not None and max_tokens is not None and request.min_tokens > max_tokens:
        raise bad_parameter("min_tokens", f"min_tokens ({request.min_tokens}) is above max_tokens ({max_tokens})")
    for name, value in (("max_tokens", max_tokens), ("temperature", request.temperature), ("top_p", request.top_p),
                        ("top_k", request.top_k), ("min_tokens", request.min_tokens),
                        ("repetition_penalty", request.repetition_penalty), ("seed", request.seed),
                        ("stop", _stops(request.stop)), ("session", request.session_id)):
        if value is not None:
            params[name] = value
    params.update(_constraint(request))
    if request.cache_salt is not None:
        params["cache_salt"] = request.cache_salt
    if isinstance(request, CompletionRequest) and request.raw:
        params["raw"] = True
    _check(params)
    return params


# SamplingParams' fields by this API's names where they differ (OpenAI's `seed`).
_API_NAMES = {"random_seed": "seed"}


def _check(params: dict[str, Any]) -> None:
    """Refused here as the server would refuse it, with the same words (the served model validates with the same
    SamplingParams), naming the API's field."""
    try:
        SamplingParams.from_wire(wire_options(params))
    except InvalidParams as error:
        raise bad_parameter(_API_NAMES.get(error.field, error.field), str(error)) from None


def chat_messages(request: ChatCompletionRequest, max_chars: int) -> list[dict[str, str]]:
    """The conversation as the generator takes it (its chat template applied on the server); `developer` is
    OpenAI's newer name for `system`."""
    messages = []
    for index, message in enumerate(request.messages):
        where = f"messages[{index}]"
        content = message.content if isinstance(message.content, str) or message.content is None else "".join(
            p.text for p in message.content)
        role = "system" if message.role == "developer" else message.role
        if message.tool_calls:
            if role != "assistant":
                raise bad_parameter(f"messages.{index}.tool_calls", f"{where}: only an assistant message calls tools")
            calls = call_text(message.tool_calls, where)
            content = f"{content}\n{calls}" if content else calls
        if content is None or (not content and role in ("user", "tool")):
            raise bad_parameter(f"messages.{index}.content", f"{where}: a {role} message needs content")
        messages.append({"role": role, "content": content})
    total = sum(len(m["content"]) for m in messages)
    if total > max_chars:
        raise prompt_too_long("messages", total, max_chars)
    return with_tools(messages, tool_plan(request.tools, request.tool_choice))


def completion_prompt(request: CompletionRequest, max_chars: int) -> str:
    prompt = request.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise unsupported("prompt", f"one prompt per request, got {len(prompt)} (send several requests)")
        prompt = prompt[0]
    if not prompt.strip():
        raise bad_parameter("prompt", "the prompt is empty")
    if len(prompt) > max_chars:
        raise prompt_too_long("prompt", len(prompt), max_chars)
    return prompt


def prompt_too_long(param: str, chars: int, max_chars: int) -> ApiError:
    return bad_parameter(param, f"{param}: {chars} characters, over this server's limit of {max_chars}",
                         code="context_length_exceeded")


def finish_reason(reason: str) -> str:
    """The generator's reasons in OpenAI's words (a stop string ends with `stop` there too)."""
    return "length" if reason == "length" else "stop"
