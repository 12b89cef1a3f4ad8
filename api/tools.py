"""Tool calls on chat completions, as OpenAI's SDK and agent frameworks send them: `tools` (functions with a JSON
schema of their parameters), `tool_choice` (`none`, `auto`, `required` or a named function), assistant messages
holding `tool_calls` and `role: tool` messages holding their results.

The engine decodes a call under a grammar, so what comes back always parses: a named or required call is decoded
under the JSON schema of `{"name": <a tool>, "arguments": <its parameters>}` (one object per call), `auto` under a
grammar that allows either that object or an answer that does not start with `{`. A call is one JSON object, the
same form the conversation's earlier calls are shown to the model in.

How tools reach the model (a documented default, since the served chat template has no tool syntax of its own):
the tools and the form of a call are described in a system message put first (or added to the first system
message); an assistant message's calls become its content, one JSON object per line; a tool message keeps its role
(`tool`) and its content, tokenized as text like every message's. With `tool_choice` "none" the tools are not
described and nothing is constrained.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from tuneship.api.errors import bad_parameter

CALL_FORM = ('To call a tool, answer with only a JSON object {"name": <the tool\'s name>, "arguments": <an object '
             "of its parameters>}; otherwise answer normally.")


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # JSON text, as OpenAI sends a call's arguments
    id: str

    def as_openai(self, index: int | None = None) -> dict[str, Any]:
        call: dict[str, Any] = {"id": self.id, "type": "function",
                                "function": {"name": self.name, "arguments": self.arguments}}
        if index is not None:
            call["index"] = index
        return call


@dataclass(frozen=True)
class ToolPlan:
    """What a request's tools ask of the engine and how its answer is read."""

    functions: dict[str, dict[str, Any]]  # name -> {"description", "parameters"}
    choice: str  # "auto", "required" or a function's name ("none" never makes a plan)

    def system_text(self) -> str:
        listed = [{"name": name, **spec} for name, spec in self.functions.items()]
        return "You can call these tools:\n" + json.dumps(listed, ensure_ascii=False) + "\n" + CALL_FORM

    def _call_schema(self, names: list[str]) -> dict[str, Any]:
        options = [{"type": "object", "properties": {"name": {"const": name},
                                                     "arguments": self.functions[name]["parameters"]},
                    "required": ["name", "arguments"], "additionalProperties": False} for name in names]
        return options[0] if len(options) == 1 else {"anyOf": options}

    def constraint(self) -> dict[str, Any]:
        """The generator's constraint (its keyword argument) for this plan."""
        if self.choice == "auto":
            schema = self._call_schema(list(self.functions))
            return {"grammar": "start: call | answer\ncall: %json " + json.dumps(schema)
                               + "\nanswer: ANSWER\nANSWER: /[^{\\s][\\s\\S]*/\n"}
        names = list(self.functions) if self.choice == "required" else [self.choice]
        schema = self._call_schema(names)
        schema.setdefault("x-guidance", {"whitespace_flexible": False})
        return {"json_schema": schema}

    @property
    def always_calls(self) -> bool:
        return self.choice != "auto"

    def parse(self, text: str) -> list[ToolCall] | None:
        """The calls in an answer, or None when it is an answer (or a call cut short at max_tokens)."""
        stripped = text.strip()
        if not stripped.startswith("{"):
            return None
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError:
            return None
        if not isinstance(value, dict) or value.get("name") not in self.functions:
            return None
        arguments = value.get("arguments", {})
        return [ToolCall(str(value["name"]), json.dumps(arguments, ensure_ascii=False),
                         "call_" + uuid.uuid4().hex[:24])]


def tool_plan(tools: list[dict[str, Any]] | None, tool_choice: str | dict[str, Any] | None) -> ToolPlan | None:
    """The request's tools checked (400 naming the field otherwise); None when nothing is to be called."""
    functions: dict[str, dict[str, Any]] = {}
    for index, tool in enumerate(tools or []):
        where = f"tools[{index}]"
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
            raise bad_parameter("tools", f'{where}: a tool is {{"type": "function", "function": {{"name": ..., '
                                         '"parameters": {...}}}')
        name = function.get("name")
        if not isinstance(name, str) or not name or len(name) > 64 or not all(
                c.isalnum() or c in "_-" for c in name):
            raise bad_parameter("tools", f"{where}.function.name: 1-64 letters, digits, '_' or '-'")
        if name in functions:
            raise bad_parameter("tools", f"{where}.function.name: {name!r} is given twice")
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, dict):
            raise bad_parameter("tools", f"{where}.function.parameters: a JSON schema (an object)")
        spec: dict[str, Any] = {"parameters": parameters}
        if isinstance(function.get("description"), str):
            spec["description"] = function["description"]
        functions[name] = spec
    choice = _choice(tool_choice, functions)
    if choice == "none" or not functions:
        return None
    return ToolPlan(functions, choice)


def _choice(tool_choice: str | dict[str, Any] | None, functions: dict[str, Any]) -> str:
    if tool_choice is None:
        return "auto" if functions else "none"
    if isinstance(tool_choice, str):
        if tool_choice not in ("none", "auto", "required"):
            raise bad_parameter("tool_choice", 'tool_choice is "none", "auto", "required" or {"type": "function", '
                                               '"function": {"name": ...}}')
        if tool_choice != "none" and not functions:
            raise bad_parameter("tool_choice", f"tool_choice {tool_choice!r} needs tools")
        return tool_choice
    function = tool_choice.get("function") if tool_choice.get("type") == "function" else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str):
        raise bad_parameter("tool_choice", 'a named tool_choice is {"type": "function", "function": {"name": ...}}')
    if name not in functions:
        raise bad_parameter("tool_choice", f"tool_choice names {name!r}, which is not among the tools "
                                           f"({', '.join(functions) or 'none given'})")
    return name


def call_text(tool_calls: list[dict[str, Any]], where: str) -> str:
    """An assistant message's calls as the model is shown them: one JSON object per line."""
    lines = []
    for index, call in enumerate(tool_calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise bad_parameter("messages", f"{where}.tool_calls[{index}]: a call is {{\"type\": \"function\", "
                                            '"function": {"name": ..., "arguments": "<JSON>"}}')
        arguments = function.get("arguments", "{}")
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
        except json.JSONDecodeError:
            raise bad_parameter("messages", f"{where}.tool_calls[{index}].function.arguments is not JSON") from None
        lines.append(json.dumps({"name": function["name"], "arguments": parsed}, ensure_ascii=False))
    return "\n".join(lines)


def with_tools(messages: list[dict[str, str]], plan: ToolPlan | None) -> list[dict[str, str]]:
    """The conversation with the tools described in its first system message."""
    if plan is None:
        return messages
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": messages[0]["content"] + "\n\n" + plan.system_text()}, *messages[1:]]
    return [{"role": "system", "content": plan.system_text()}, *messages]
