"""How a generated answer is described for quality monitoring: its length bin and, for a model tuned to answer from
a closed set, its label. No Triton import: the served generator (the serving bundle) and the
export's reference behaviour (`reference.json`) use the same code, so live shares and reference shares are
comparable bin for bin and label for label."""

import re
from collections.abc import Sequence

# Lower edges of the answer-length bins, in tokens; an answer falls in the last edge at or below its length.
LENGTH_EDGES = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
OTHER = "other"
_FIRST_WORD = re.compile(r"[a-z0-9]+")
REFERENCE_FILE = "reference.json"


def first_word(text: str) -> str:
    """An answer's first word, lower-cased, without punctuation: how the export gate's exact match reads it."""
    match = _FIRST_WORD.search(text.lower())
    return match.group(0) if match else ""


def label_of(text: str, labels: Sequence[str]) -> str:
    """The answer's label among `labels` (lower-case), or 'other'."""
    word = first_word(text)
    return word if word in labels else OTHER


def length_bin(tokens: int, edges: Sequence[int] = LENGTH_EDGES) -> str:
    """The bin name (its lower edge) of an answer of `tokens` tokens."""
    name = edges[0]
    for edge in edges:
        if tokens >= edge:
            name = edge
        else:
            break
    return str(name)
