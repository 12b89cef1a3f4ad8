"""The serving engine: continuous batching of every request (plain, constrained, adapter, conversation) with
automatic prefix caching, and the thin Triton model that serves it. Imports no other stage: the exporter copies it
into a model repository (bundle.py), where Triton's Python backend runs it as `tuneship_serving`.

Names load on first use: the client imports SamplingParams without numpy's or ONNX Runtime's import cost."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "SamplingParams": "params",
    "Constraint": "params",
    "InvalidParams": "params",
    "Engine": "engine",
    "Request": "engine",
    "PrefixCache": "prefix_cache",
    "ChatFormat": "chat",
    "Grammars": "constraints",
    "ConstraintNotFollowed": "constraints",
    "LoraWeights": "adapters",
    "ADAPTERS_DIR": "adapters",
    "INFO_FILE": "adapters",
    "WEIGHTS_FILE": "adapters",
    "check_name": "adapters",
    "node_shapes": "adapters",
    "published": "adapters",
    "LENGTH_EDGES": "answers",
    "OTHER": "answers",
    "REFERENCE_FILE": "answers",
    "label_of": "answers",
    "length_bin": "answers",
    "publish_bundle": "bundle",
    "requirements": "bundle",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


if TYPE_CHECKING:
    from .adapters import ADAPTERS_DIR as ADAPTERS_DIR
    from .adapters import INFO_FILE as INFO_FILE
    from .adapters import WEIGHTS_FILE as WEIGHTS_FILE
    from .adapters import LoraWeights as LoraWeights
    from .adapters import check_name as check_name
    from .adapters import node_shapes as node_shapes
    from .adapters import published as published
    from .answers import LENGTH_EDGES as LENGTH_EDGES
    from .answers import OTHER as OTHER
    from .answers import REFERENCE_FILE as REFERENCE_FILE
    from .answers import label_of as label_of
    from .answers import length_bin as length_bin
    from .bundle import publish_bundle as publish_bundle
    from .bundle import requirements as requirements
    from .chat import ChatFormat as ChatFormat
    from .constraints import ConstraintNotFollowed as ConstraintNotFollowed
    from .constraints import Grammars as Grammars
    from .engine import Engine as Engine
    from .engine import Request as Request
    from .params import Constraint as Constraint
    from .params import InvalidParams as InvalidParams
    from .params import SamplingParams as SamplingParams
    from .prefix_cache import PrefixCache as PrefixCache
