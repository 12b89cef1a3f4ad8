"""A generator's reference behaviour at export, described with the same bins and labels the served model counts."""

from __future__ import annotations

import pytest

from tuneship.exporter.instruct.reference import reference_behaviour
from tuneship.serving import LENGTH_EDGES, label_of, length_bin
from tuneship.trainer import normalise


@pytest.mark.parametrize(("tokens", "expected"), [(0, "0"), (1, "1"), (3, "2"), (4, "4"), (255, "128"),
                                                  (256, "256"), (5000, "1024")])
def test_an_answer_falls_in_the_last_bin_at_or_below_its_length(tokens: int, expected: str) -> None:
    assert length_bin(tokens) == expected


def test_labels_are_read_as_the_export_gate_reads_answers() -> None:
    labels = ["negative", "positive"]
    assert [label_of(text, labels) for text in ("Positive.", "  negative, clearly", "Neutral", "", "**positive**")] \
        == ["positive", "negative", "other", "other", "positive"]
    assert all(label_of(text, labels) in (normalise(text), "other") for text in ("Positive!", "meh", "NEGATIVE"))


def test_the_reference_gives_shares_of_finishes_lengths_labels_and_exact_match() -> None:
    tokens = [[1], [1, 2], [], list(range(8))]  # the last reached max_tokens 8
    texts = ["positive", "Negative.", "", "positive positive positive"]
    reference = reference_behaviour(tokens, texts, 8, ["negative", "positive"],
                                    ["positive", "positive", "negative", "positive"], normalise)
    assert reference["finish_share"] == {"stop": 0.75, "length": 0.25}
    assert set(reference["length_share"]) == {str(edge) for edge in LENGTH_EDGES}
    assert {k: v for k, v in reference["length_share"].items() if v} == {"0": 0.25, "1": 0.25, "2": 0.25, "8": 0.25}
    assert reference["label_share"] == {"negative": 0.25, "positive": 0.5, "other": 0.25}
    assert reference["empty_share"] == 0.25 and reference["mean_tokens"] == 2.75
    assert reference["exact_match"] == 0.5


def test_an_open_ended_model_has_no_labels_or_exact_match() -> None:
    reference = reference_behaviour([[1, 2, 3]], ["Hello there"], 256)
    assert "label_share" not in reference and reference["exact_match"] is None
    with pytest.raises(ValueError, match="at least one answer"):
        reference_behaviour([], [], 256)
