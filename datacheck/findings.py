"""One thing the check found: its kind, where it is, the label it has and the one it probably should have."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

KINDS = {
    "label_issue": "the given label is probably wrong (out-of-fold probabilities, cleanlab)",
    "duplicate": "the same text and label again",
    "conflict": "the same text (or the same after case and punctuation) under another label (instruct: answer)",
    "near_duplicate": "nearly the same text (case, punctuation, or embeddings this close)",
    "leak": "an evaluation text that is also in the training data",
    "outlier": "far from every other training text",
    "invalid": "instruct: a record the trainer would refuse (why: in `suggested`)",
    "template": "instruct: turns out of the chat template's order, or a control marker in a message",
    "truncated": "instruct: longer than the training's token budget, so the answer is cut",
}


@dataclass(frozen=True)
class Finding:
    kind: str
    file: str
    line: int
    text: str
    given: str
    suggested: str = ""
    score: float = 0.0
    """label_issue: the given label's quality (lower is worse); duplicates: similarity; outliers: the
    out-of-distribution score (lower is farther)."""
    other: str = ""
    """The row it repeats or leaks from ("file:line")."""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
