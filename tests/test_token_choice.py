"""How the engine picks each row's next token (serving/sampling.py): plain greedy takes a shortcut (no copy of the
scores), so the rules that change the scores must still apply whenever they are asked for; a constrained row's
grammar mask is one of them."""

from __future__ import annotations

import numpy as np
import pytest

from tuneship.serving import InvalidParams, SamplingParams
from tuneship.serving.sampling import TokenChooser

EOS = 7


def _chooser(grammar: object = None, **options: object) -> TokenChooser:
    return TokenChooser(SamplingParams(max_tokens=16, **options), [1, 2, 3], {EOS}, grammar)  # type: ignore[arg-type]


def _scores(best: int, second: int, size: int = 50) -> np.ndarray:
    scores = np.linspace(-1.0, 0.0, size, dtype=np.float32)
    scores[best], scores[second] = 5.0, 4.0
    return scores


def test_greedy_takes_the_best_score_and_leaves_the_scores_alone() -> None:
    scores = _scores(best=11, second=12)
    before = scores.copy()
    assert _chooser().choose(scores) == 11
    assert np.array_equal(scores, before)  # the batch's logits are shared by every row


def test_the_end_marker_is_refused_until_the_minimum_length() -> None:
    chooser = _chooser(min_tokens=2)
    scores = _scores(best=EOS, second=12)
    assert chooser.choose(scores) == 12
    chooser.accept(12)
    chooser.accept(13)
    assert chooser.choose(scores) == EOS


def test_repetition_penalty_moves_greedy_off_a_seen_token() -> None:
    scores = _scores(best=2, second=12)  # 2 is in the prompt
    assert _chooser().choose(scores) == 2
    assert _chooser(repetition_penalty=2.0).choose(scores) == 12


def test_sampling_with_a_seed_is_repeatable_and_stays_in_top_k() -> None:
    scores = np.zeros(50, dtype=np.float32)
    scores[[20, 21, 22]] = 3.0
    picks = [_chooser(temperature=1.0, top_k=3, random_seed=5).choose(scores) for _ in range(3)]
    assert len(set(picks)) == 1
    drawn = {_chooser(temperature=1.0, top_k=3, random_seed=seed).choose(scores) for seed in range(40)}
    assert drawn <= {20, 21, 22}
    assert len(drawn) > 1


class _Grammar:
    """A grammar that allows `allowed` tokens and records what it was given."""

    def __init__(self, allowed: list[int], size: int = 50) -> None:
        self.mask = np.zeros(size, dtype=bool)
        self.mask[allowed] = True
        self.consumed: list[int] = []

    def allowed(self) -> np.ndarray:
        return self.mask.copy()

    def advance(self, token: int) -> None:
        self.consumed.append(token)


def test_a_grammar_masks_the_rows_scores_and_sees_the_chosen_token() -> None:
    scores = _scores(best=11, second=12)
    before = scores.copy()
    grammar = _Grammar([30, 31])
    chooser = _chooser(grammar)
    token = chooser.choose(scores)
    assert token == 31  # the better of the two allowed, though 11 scores higher
    assert np.array_equal(scores, before)
    chooser.accept(token)
    assert grammar.consumed == [31]
    sampled = {_chooser(_Grammar([30, 31]), temperature=2.0, random_seed=s).choose(scores) for s in range(30)}
    assert sampled <= {30, 31}


def test_a_grammar_that_may_end_keeps_going_below_the_minimum_length() -> None:
    scores = _scores(best=EOS, second=12)
    assert _chooser(_Grammar([EOS, 30]), min_tokens=3).choose(scores) == 30
    assert _chooser(_Grammar([EOS]), min_tokens=3).choose(scores) == EOS  # nothing else can follow: it ends


@pytest.mark.parametrize(("options", "field"), [
    ({"top_k": 0}, "top_k"), ({"top_p": 0.0}, "top_p"), ({"temperature": -1}, "temperature"),
    ({"max_tokens": 0}, "max_tokens"), ({"min_tokens": 5, "max_tokens": 2}, "min_tokens"),
    ({"repetition_penalty": 0}, "repetition_penalty"), ({"stop": [""]}, "stop"),
    ({"stream_interval_ms": 5000}, "stream_interval_ms"), ({"adapter": "../x"}, "adapter"),
])
def test_sampling_params_name_the_field_they_refuse(options: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidParams, match=field) as refused:
        SamplingParams(**options)  # type: ignore[arg-type]
    assert refused.value.field == field


def test_sampling_params_cross_the_wire_unchanged() -> None:
    params = SamplingParams.from_wire({"max_tokens": 5, "seed": 3, "stop": "x", "guided_choice": ["a", "b"],
                                       "session_id": "s", "tuneship_probe": True})
    assert params.random_seed == 3 and params.stop == ("x",) and params.constraint is not None
    assert params.constraint.value == ("a", "b") and params.extra == {"tuneship_probe": True}
    assert SamplingParams.from_wire(params.to_wire()) == params
    with pytest.raises(InvalidParams, match="give one constraint per request"):
        SamplingParams.from_wire({"guided_regex": "a+", "guided_json": {"type": "object"}})
