"""Typed results of inference calls."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]


@dataclass(frozen=True)
class InferResult:
    """The outputs of one inference, by name, with the model and version that produced them."""

    model: str
    version: str
    outputs: Mapping[str, Array]
    request_id: str = ""
    final: bool = True
    """False for a streamed (decoupled) response that more responses follow; the last one of a stream is final."""

    def __getitem__(self, name: str) -> Array:
        if name not in self.outputs:
            raise KeyError(f"output {name!r} not in the result (outputs: {', '.join(self.outputs)})")
        return self.outputs[name]

    def strings(self, name: str) -> list[str]:
        """A BYTES output decoded as UTF-8 strings, flattened."""
        return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.asarray(self[name]).reshape(-1)]
