"""The OpenAI-compatible API without a Triton behind it: what a request becomes for the generator, what is
refused and how, the served ids of a repository's adapters, a server that cannot be reached (503 with
Retry-After), and a stream whose generation fails after its first piece (an error event, then [DONE])."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tuneship.api import ApiError, ApiOptions, ApiServer
from tuneship.api.protocol import ChatCompletionRequest, CompletionRequest, chat_messages, generation_params
from tuneship.client import Generation, ServerError
from tuneship.repository import published_adapters


def _chat(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "chat", "messages": [{"role": "user", "content": "hi"}],
                                                 **fields})


def test_a_chat_request_becomes_the_generators_parameters() -> None:
    params = generation_params(_chat(max_completion_tokens=12, temperature=0.5, top_p=0.9, stop="\n", seed=7,
                                     session_id="user-1", top_k=5, min_tokens=2, repetition_penalty=1.1))
    assert params == {"max_tokens": 12, "temperature": 0.5, "top_p": 0.9, "stop": ["\n"], "seed": 7,
                      "session": "user-1", "top_k": 5, "min_tokens": 2, "repetition_penalty": 1.1}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    shaped = _chat(response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}})
    assert generation_params(shaped) == {"json_schema": schema}
    assert generation_params(_chat(response_format={"type": "json_object"})) == {"json_schema": {"type": "object"}}
    assert generation_params(_chat(guided_choice=["yes", "no"])) == {"choices": ["yes", "no"]}
    assert generation_params(_chat(n=1, logprobs=False, tool_choice="none", presence_penalty=0)) == {}
    # Text completions: OpenAI's default of 16 tokens, and `raw` to skip the chat template.
    completion = CompletionRequest.model_validate({"model": "chat", "prompt": "Once", "raw": True})
    assert generation_params(completion) == {"max_tokens": 16, "raw": True}
    messages = chat_messages(_chat(messages=[{"role": "developer", "content": "Be brief."},
                                             {"role": "user", "content": [{"type": "text", "text": "a"},
                                                                          {"type": "text", "text": "b"}]}]), 100)
    assert messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "ab"}]


@pytest.mark.parametrize(("fields", "param"), [
    ({"n": 3}, "n"), ({"logprobs": True}, "logprobs"), ({"top_logprobs": 2}, "top_logprobs"),
    ({"tools": [{"type": "function"}]}, "tools"), ({"tool_choice": "auto"}, "tool_choice"),
    ({"frequency_penalty": 1.0}, "frequency_penalty"), ({"logit_bias": {"1": 2.0}}, "logit_bias"),
    ({"store": True}, "store"), ({"max_tokens": 4, "max_completion_tokens": 5}, "max_completion_tokens"),
    ({"guided_choice": ["a"], "guided_regex": "b"}, "guided_regex"), ({"stop": ["x"] * 17}, "stop"),
    ({"stream_options": {"include_usage": True}}, "stream_options"), ({"min_tokens": 9, "max_tokens": 2}, "min_tokens"),
    ({"top_k": 0}, "top_k"), ({"guided_regex": ""}, "guided_regex"),
])
def test_what_the_engine_cannot_do_is_refused_naming_the_parameter(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(ApiError) as refused:
        generation_params(_chat(**fields))
    assert refused.value.status == 400 and refused.value.param == param
    assert refused.value.body()["error"]["type"] == "invalid_request_error"


def test_a_repositorys_published_adapters_are_listed_and_half_written_ones_are_not(tmp_path: Path) -> None:
    for name, finished in (("support", True), ("sales", True), ("half", False), (".hidden", True)):
        folder = tmp_path / "chat" / "adapters" / name
        folder.mkdir(parents=True)
        if finished:
            (folder / "adapter.json").write_text("{}")
    assert sorted(published_adapters(tmp_path, "chat")) == ["sales", "support"]
    assert published_adapters(tmp_path, "other") == {}


def _request(url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_an_unreachable_triton_is_503_with_retry_after_and_an_unhealthy_health() -> None:
    from tuneship.deploy import free_port

    with ApiServer(ApiOptions(url=f"127.0.0.1:{free_port()}", port=0, request_timeout_s=5)) as api:
        status, _, _ = _request(f"{api.url}/health")
        assert status == 503
        status, headers, body = _request(f"{api.url}/v1/chat/completions",
                                         {"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
    assert status == 503 and headers.get("retry-after") == "1", body
    assert json.loads(body)["error"]["code"] == "server_unavailable"


def test_a_generation_that_fails_after_its_first_piece_ends_with_an_error_event(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake generator stands in for Triton (a unit test of the event stream): two pieces, then the server fails."""
    from tuneship.api.catalog import Catalog, ServedModel
    from tuneship.client import AsyncGenerator

    class Failing:
        generation: Generation | None = None

        def __aiter__(self) -> AsyncIterator[str]:
            return self._pieces()

        async def _pieces(self) -> AsyncIterator[str]:
            yield "Hello"
            yield " there"
            raise ServerError("generation failed: the model's stub died")

        def cancel(self) -> None:
            pass

    async def resolve(self: Catalog, model_id: str) -> ServedModel:
        return ServedModel(id=model_id, model=model_id, adapter=None, created=0)

    monkeypatch.setattr(Catalog, "resolve", resolve)
    monkeypatch.setattr(AsyncGenerator, "open", lambda self, prompt, **kwargs: Failing())
    from tuneship.deploy import free_port

    with ApiServer(ApiOptions(url=f"127.0.0.1:{free_port()}", port=0)) as api:
        status, _, body = _request(f"{api.url}/v1/chat/completions", {
            "model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    events = [line[len("data: "):] for line in body.decode().splitlines() if line.startswith("data: ")]
    assert status == 200 and events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if "choices" in c) == "Hello there"
    assert chunks[-1]["error"]["type"] == "server_error" and "stub died" in chunks[-1]["error"]["message"]
