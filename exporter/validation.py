"""Numerical validation's verdict: an exported graph's largest logit difference from PyTorch on held-out examples
(each task computes it on its own inputs: text/validation.py, image/export.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


@dataclass
class ValidationResult:
    max_abs_diff: float
    label_agreement: float
    examples: int
    tolerance: float
    worst: list[dict[str, Any]] = field(default_factory=list)
    unit: str = "texts"  # what was compared, for the message

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def describe(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        return (f"validation {verdict}: max |logit diff| {self.max_abs_diff:.2e} (tolerance {self.tolerance:.0e}), "
                f"label agreement {100 * self.label_agreement:.2f}% on {self.examples} {self.unit}")
