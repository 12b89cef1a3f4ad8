"""A generator version's reference behaviour at export: how its answers to held-out prompts finish, how long they
are, which labels they carry and how many are right, written as `reference.json` beside the version.

The served model exposes these shares as gauges next to its live counts, so Prometheus compares the two
(`model_version:generation_length_psi:30m`, ...; see deploy/prometheus/recording_rules.yml). The answers are
generated as a caller who sets no limit gets them: greedy, up to the serving default `max_tokens`, through the
same batcher, so a `length` finish in the reference means what it means live.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from tuneship.serving import LENGTH_EDGES, OTHER, label_of, length_bin


def reference_behaviour(tokens: Sequence[Sequence[int]], texts: Sequence[str], max_tokens: int,
                        labels: Sequence[str] = (), expected: Sequence[str] | None = None,
                        normalise: Any = None) -> dict[str, Any]:
    """`tokens` / `texts`: each held-out prompt's greedy answer (EOS excluded) and its decoded text; `expected`
    the right answers, compared after `normalise` (exact match, where answers come from a closed set)."""
    count = len(tokens)
    if count == 0 or count != len(texts):
        raise ValueError("a reference needs at least one answer, and one text per answer")
    finishes = Counter("length" if len(answer) >= max_tokens else "stop" for answer in tokens)
    bins = Counter(length_bin(len(answer)) for answer in tokens)
    reference: dict[str, Any] = {
        "prompts": count,
        "max_tokens": max_tokens,
        "finish_share": {reason: round(finishes[reason] / count, 6) for reason in ("stop", "length")},
        "length_edges": list(LENGTH_EDGES),
        "length_share": {str(edge): round(bins[str(edge)] / count, 6) for edge in LENGTH_EDGES},
        "mean_tokens": round(sum(len(answer) for answer in tokens) / count, 3),
        "empty_share": round(sum(1 for answer in tokens if not answer) / count, 6),
        "exact_match": None,
    }
    if labels:
        lower = [label.lower() for label in labels]
        shares = Counter(label_of(text, lower) for text in texts)
        reference["label_share"] = {label: round(shares[label] / count, 6) for label in [*lower, OTHER]}
    if expected is not None and normalise is not None:
        hits = sum(normalise(text) == normalise(answer) for text, answer in zip(texts, expected, strict=True))
        reference["exact_match"] = round(hits / count, 6)
    return reference
