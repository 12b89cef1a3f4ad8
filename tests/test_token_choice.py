"""How the batcher picks each row's next token (`Sequence.choose`): plain greedy takes a shortcut (no copy of the
scores), so the rules that change the scores must still apply whenever they are asked for."""

from __future__ import annotations

import numpy as np

from tuneship.exporter.triton_models.batcher import Sequence

EOS = 7


def _sequence(**options: object) -> Sequence:
    return Sequence([1, 2, 3], 16, lambda _t: True, lambda _r, _e: None, **options)  # type: ignore[arg-type]


def _scores(best: int, second: int, size: int = 50) -> np.ndarray:
    scores = np.linspace(-1.0, 0.0, size, dtype=np.float32)
    scores[best], scores[second] = 5.0, 4.0
    return scores


def test_greedy_takes_the_best_score_and_leaves_the_scores_alone() -> None:
    scores = _scores(best=11, second=12)
    before = scores.copy()
    assert _sequence().choose(scores, {EOS}) == 11
    assert np.array_equal(scores, before)  # the batch's logits are shared by every row


def test_the_end_marker_is_refused_until_the_minimum_length() -> None:
    sequence = _sequence(min_new_tokens=2)
    scores = _scores(best=EOS, second=12)
    assert sequence.choose(scores, {EOS}) == 12
    sequence.generated = 2
    assert sequence.choose(scores, {EOS}) == EOS


def test_repetition_penalty_moves_greedy_off_a_seen_token() -> None:
    scores = _scores(best=2, second=12)  # 2 is in the prompt
    assert _sequence().choose(scores, {EOS}) == 2
    assert _sequence(repetition_penalty=2.0).choose(scores, {EOS}) == 12


def test_sampling_with_a_seed_is_repeatable_and_stays_in_top_k() -> None:
    scores = np.zeros(50, dtype=np.float32)
    scores[[20, 21, 22]] = 3.0
    picks = [_sequence(temperature=1.0, top_k=3, seed=5).choose(scores, {EOS}) for _ in range(3)]
    assert len(set(picks)) == 1
    drawn = {_sequence(temperature=1.0, top_k=3, seed=seed).choose(scores, {EOS}) for seed in range(40)}
    assert drawn <= {20, 21, 22}
    assert len(drawn) > 1
