"""One request's generation options, validated in one place: the client checks them before sending, the API before
relaying, the served model when they arrive, all with these words (a value one side refuses, every side refuses).

Pure Python (no numpy, no onnxruntime): services import it with the light client. The names on the wire are vLLM's
(`guided_choice`, `guided_regex`, `guided_json`, `random_seed`, `session_id`), so Triton's generate endpoints and
LLM tools that speak to vLLM's backend send options this type reads.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

MAX_STOPS = 16
MAX_SESSION_ID = 128
MAX_STREAM_INTERVAL_MS = 1000
ADAPTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
CONSTRAINTS = ("guided_choice", "guided_regex", "guided_json", "guided_grammar")
# Other servers' names for the same options (vLLM's, TensorRT-LLM's), as Triton's OpenAI frontend sends them.
ALIASES = {"seed": "random_seed", "lora_name": "adapter", "stop_words": "stop"}


class InvalidParams(ValueError):
    """A generation option the engine cannot take; `field` names it (the API answers 400 with it as `param`)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.field = name


def _number(name: str, value: Any, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
        raise InvalidParams(name, f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if not math.isfinite(float(value)):
        raise InvalidParams(name, f"{name} must be finite, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Constraint:
    """The answer's shape: one of a list of answers (`guided_choice`), a regular expression (`guided_regex`), a
    JSON schema (`guided_json`) or a Lark grammar (`guided_grammar`, llguidance's dialect: `%json {...}` embeds a
    schema). The engine turns it into a grammar whose token mask is applied to the request's row of every batched
    step."""

    kind: str  # one of CONSTRAINTS
    value: Any  # list[str] | str | dict

    def __post_init__(self) -> None:
        if self.kind == "guided_choice":
            value = self.value
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    value = [value]
            if not isinstance(value, (list, tuple)) or not value or not all(isinstance(c, str) and c for c in value):
                raise InvalidParams(self.kind, "guided_choice must be a non-empty list of non-empty strings")
            object.__setattr__(self, "value", tuple(value))
        elif self.kind in ("guided_regex", "guided_grammar"):
            what = "regular expression" if self.kind == "guided_regex" else "Lark grammar"
            if not isinstance(self.value, str) or not self.value:
                raise InvalidParams(self.kind, f"{self.kind} must be a non-empty {what} (a string)")
        elif self.kind == "guided_json":
            value = self.value
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError as error:
                    raise InvalidParams(self.kind, f"guided_json is not valid JSON ({error.msg} at column "
                                                   f"{error.colno})") from None
            if not isinstance(value, Mapping):
                raise InvalidParams(self.kind, "guided_json must be a JSON schema (an object)")
            object.__setattr__(self, "value", dict(value))
        else:
            raise InvalidParams(self.kind, f"unknown constraint {self.kind!r}; use one of {', '.join(CONSTRAINTS)}")

    def to_wire(self) -> Any:
        return list(self.value) if self.kind == "guided_choice" else self.value


@dataclass(frozen=True)
class SamplingParams:
    """How to generate one answer. `max_tokens` None: the server's default; `temperature` 0: greedy."""

    max_tokens: int | None = None
    min_tokens: int = 0
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 50
    repetition_penalty: float = 1.0
    random_seed: int | None = None
    stop: tuple[str, ...] = ()
    constraint: Constraint | None = None
    session_id: str | None = None
    adapter: str | None = None
    # Requests with different salts never share cached prefixes (vLLM's cache_salt): one tenant cannot learn from
    # its first-token time which prompts another sent.
    cache_salt: str | None = None
    raw: bool = False
    stream: bool = False
    stream_interval_ms: float | None = None  # None: the server's setting
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)  # engine-only flags (tuneship_probe)

    def __post_init__(self) -> None:
        if self.max_tokens is not None:
            if _number("max_tokens", self.max_tokens, integer=True) < 1:
                raise InvalidParams("max_tokens", f"max_tokens must be at least 1, got {self.max_tokens}")
            object.__setattr__(self, "max_tokens", int(self.max_tokens))
        if _number("min_tokens", self.min_tokens, integer=True) < 0:
            raise InvalidParams("min_tokens", f"min_tokens must be at least 0, got {self.min_tokens}")
        object.__setattr__(self, "min_tokens", int(self.min_tokens))
        if self.max_tokens is not None and self.min_tokens > self.max_tokens:
            raise InvalidParams("min_tokens", f"min_tokens ({self.min_tokens}) is above max_tokens "
                                              f"({self.max_tokens})")
        if _number("temperature", self.temperature) < 0:
            raise InvalidParams("temperature", f"temperature must be >= 0, got {self.temperature}")
        if not 0 < _number("top_p", self.top_p) <= 1:
            raise InvalidParams("top_p", f"top_p must be in (0, 1], got {self.top_p}")
        if _number("top_k", self.top_k, integer=True) < 1:
            raise InvalidParams("top_k", f"top_k must be at least 1, got {self.top_k}")
        object.__setattr__(self, "top_k", int(self.top_k))
        if _number("repetition_penalty", self.repetition_penalty) <= 0:
            raise InvalidParams("repetition_penalty", f"repetition_penalty must be > 0, got "
                                                      f"{self.repetition_penalty}")
        if self.random_seed is not None:
            seed = _number("random_seed", self.random_seed, integer=True)
            if not 0 <= seed < 2**63:
                raise InvalidParams("random_seed", f"random_seed must be from 0 to 2**63 - 1, got {self.random_seed}")
            object.__setattr__(self, "random_seed", int(seed))
        stops = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        if len(stops) > MAX_STOPS:
            raise InvalidParams("stop", f"at most {MAX_STOPS} stop sequences, got {len(stops)}")
        if not all(isinstance(s, str) and s for s in stops):
            raise InvalidParams("stop", "a stop sequence must be a non-empty string")
        object.__setattr__(self, "stop", stops)
        if self.session_id is not None and (not isinstance(self.session_id, str)
                                            or not 0 < len(self.session_id) <= MAX_SESSION_ID):
            raise InvalidParams("session_id", f"session_id must be a non-empty string of at most {MAX_SESSION_ID} "
                                              "characters")
        if self.adapter is not None and (not isinstance(self.adapter, str) or not ADAPTER_NAME.match(self.adapter)):
            raise InvalidParams("adapter", "adapter must be the name of a published adapter (letters, digits, '.', "
                                           "'_', '-'; at most 64 characters)")
        if self.cache_salt is not None and (not isinstance(self.cache_salt, str)
                                            or not 0 < len(self.cache_salt) <= MAX_SESSION_ID):
            raise InvalidParams("cache_salt", f"cache_salt must be a non-empty string of at most {MAX_SESSION_ID} "
                                              "characters")
        if not isinstance(self.raw, bool):
            raise InvalidParams("raw", f"raw must be true or false, got {self.raw!r}")
        if not isinstance(self.stream, bool):
            raise InvalidParams("stream", f"stream must be true or false, got {self.stream!r}")
        interval = self.stream_interval_ms
        if interval is not None and not 0 <= _number("stream_interval_ms", interval) <= MAX_STREAM_INTERVAL_MS:
            raise InvalidParams("stream_interval_ms", f"stream_interval_ms must be a number of milliseconds from 0 "
                                                      f"to {MAX_STREAM_INTERVAL_MS}, got {interval!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def with_limits(self, default_max_tokens: int, max_tokens_limit: int) -> SamplingParams:
        """These options with the server's default length filled in, refused when over its limit."""
        max_tokens = self.max_tokens if self.max_tokens is not None else min(default_max_tokens, max_tokens_limit)
        if max_tokens > max_tokens_limit:
            raise InvalidParams("max_tokens", f"max_tokens must be between 1 and {max_tokens_limit}, got "
                                              f"{max_tokens}")
        if self.min_tokens > max_tokens:
            raise InvalidParams("min_tokens", f"min_tokens must be between 0 and max_tokens ({max_tokens}), got "
                                              f"{self.min_tokens}")
        return replace(self, max_tokens=max_tokens)

    # -- the wire -------------------------------------------------------------------------------------------

    @classmethod
    def from_wire(cls, options: Mapping[str, Any]) -> SamplingParams:
        """From the server's names (vLLM's, with their aliases): `sampling_parameters`, the generate endpoint's
        parameters or named inputs, merged by the caller. Unknown names are left to the caller to refuse."""
        values: dict[str, Any] = {}
        constraints = {}
        names = {spec.name for spec in fields(cls)} - {"constraint", "extra"}
        extra = {}
        for key, value in options.items():
            name = ALIASES.get(key, key)
            if value is None:
                continue
            if name in CONSTRAINTS:
                constraints[name] = value  # an empty one is refused by Constraint, naming it
            elif name in names:
                values[name] = value
            else:
                extra[name] = value
        if len(constraints) > 1:
            raise InvalidParams(sorted(constraints)[1], f"give one constraint per request, not "
                                                        f"{' and '.join(sorted(constraints))}")
        if constraints:
            kind, value = next(iter(constraints.items()))
            values["constraint"] = Constraint(kind, value)
        if "stop" in values and isinstance(values["stop"], str):
            values["stop"] = (values["stop"],)
        return cls(**values, extra=extra)

    def to_wire(self) -> dict[str, Any]:
        """The options that differ from the defaults, by the server's names (JSON-ready)."""
        wire: dict[str, Any] = {}
        for spec in fields(self):
            if spec.name in ("extra", "constraint"):
                continue
            value = getattr(self, spec.name)
            if value != spec.default and not (spec.name == "stop" and not value):
                wire[spec.name] = list(value) if isinstance(value, tuple) else value
        if self.constraint is not None:
            wire[self.constraint.kind] = self.constraint.to_wire()
        wire.update(self.extra)
        return wire
