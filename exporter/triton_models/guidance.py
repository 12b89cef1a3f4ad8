"""Constrained answers, by the names vLLM uses (`guided_choice`, `guided_regex`, `guided_json`): one per request,
turned into onnxruntime-genai's grammar guidance (llguidance), so every generated token keeps the answer inside the
constraint. No Triton import: the served generator (copied beside it as `tuneship_guidance.py`) and the benchmarks
use the same translation."""

from __future__ import annotations

import json
from typing import Any

GUIDES = ("guided_choice", "guided_regex", "guided_json")


def json_object(text: str, name: str, what: str = "a JSON object") -> dict[str, Any]:
    """`text` parsed as a JSON object, or ValueError naming the parameter `name`."""
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{name} is not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"{name} must be {what}")
    return parsed


def guidance(options: dict[str, Any]) -> tuple[str, str] | None:
    """(onnxruntime-genai's guidance type, its data) for the request's constraint, or None; ValueError naming the
    parameter when it is malformed."""
    given = [name for name in GUIDES if options.get(name) not in (None, "", [])]
    if not given:
        return None
    if len(given) > 1:
        raise ValueError(f"give one constraint per request, not {' and '.join(given)}")
    name = given[0]
    value = options[name]
    if name == "guided_choice":
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(c, str) and c for c in value):
            raise ValueError("guided_choice must be a non-empty list of non-empty strings")
        # A Lark grammar of string literals (JSON-escaped): any text is matched literally, whatever it holds.
        return "lark_grammar", "start: " + " | ".join(json.dumps(c) for c in value)
    if name == "guided_regex":
        if not isinstance(value, str):
            raise ValueError("guided_regex must be a regular expression (a string)")
        return "regex", value
    schema = json_object(value, "guided_json", "a JSON schema (an object)") if isinstance(value, str) else value
    if not isinstance(schema, dict):
        raise ValueError("guided_json must be a JSON schema (an object)")
    # Compact JSON unless the schema asks otherwise: with free whitespace a weak model can spend every token it
    # has on newlines and tabs (measured: the test suite's tiny model never closed its object).
    schema.setdefault("x-guidance", {"whitespace_flexible": False})
    return "json_schema", json.dumps(schema)


