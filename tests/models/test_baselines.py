"""Popularity and first-order Markov baselines, evaluated with the same EvalSet and metrics."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest

import models.baselines
from models.baselines import MarkovBaseline, PopularityBaseline, evaluate_baseline
from models.sequences import build_sequences, make_eval_set

V = 9  # 4 reserved ids + tokens 4..8


def sequences():
    # user a: 4 5 4 5 6 ; user b: 4 5 7 ; user c: 8
    frame = pd.DataFrame({"user_id": list("aaaaabbbc"), "timestamp": [1, 2, 3, 4, 5, 1, 2, 3, 1]})
    return build_sequences(frame, np.array([4, 5, 4, 5, 6, 4, 5, 7, 8]))


def test_doctests() -> None:
    assert doctest.testmod(models.baselines).failed == 0


def test_popularity_scores_follow_train_counts() -> None:
    pop = PopularityBaseline.fit(sequences(), V)
    scores = pop.scores(np.array([[4, 0], [8, 5]]), np.array([1, 2]))
    assert scores.shape == (2, V) and np.array_equal(scores[0], scores[1])
    counts = np.array([0, 0, 0, 0, 3, 3, 1, 1, 1])
    assert np.allclose(scores[0], (counts + 1) / (counts.sum() + V))


def test_markov_counts_transitions_within_users_only() -> None:
    markov = MarkovBaseline.fit(sequences(), V)
    dense = markov.transitions.toarray()
    assert dense[4, 5] == 3 and dense[5, 4] == 1 and dense[5, 6] == 1 and dense[5, 7] == 1
    assert dense[7, 8] == 0  # b's last → c's first is not a transition
    assert dense.sum() == 6


def test_markov_smoothing_and_popularity_backoff() -> None:
    markov = MarkovBaseline.fit(sequences(), V, smoothing=2.0)
    tokens = np.array([[4, 5, 0], [8, 0, 0], [0, 0, 0]])
    scores = markov.scores(tokens, np.array([2, 1, 0]))
    p = markov.popularity
    # after 5: C[5,·] = {4: 1, 6: 1, 7: 1}, total 3
    assert scores[0, 6] == pytest.approx((1 + 2 * p[6]) / (3 + 2))
    assert scores[0, 8] == pytest.approx(2 * p[8] / 5)
    # after 8 (never followed by anything) and after nothing: pure popularity
    assert np.allclose(scores[1], p) and np.allclose(scores[2], p)
    with pytest.raises(ValueError, match="smoothing"):
        MarkovBaseline.fit(sequences(), V, smoothing=0)


def test_evaluate_baseline_hand_computed_and_batch_invariant() -> None:
    seqs = sequences()
    ev = make_eval_set(seqs, "leave_last_out")  # a: 4 5 4 5 → 6 ; b: 4 5 → 7
    train = seqs.drop_last(1)  # a: 4 5 4 5 ; b: 4 5 ; c: 8
    markov = MarkovBaseline.fit(train, V)
    # after 5 in train: only 5 → 4 (once); then popularity (4: 3, 5: 3, 8: 1, 6: 0, 7: 0) breaks ties
    # candidates exclude PAD/MASK/PROFILE: ranking = 4, 5, 8, UNK(1)/6/7 all at add-one popularity
    metrics = evaluate_baseline(markov, ev, V)
    assert metrics["n"] == 2
    assert metrics["HR@1"] == 0.0 and metrics["HR@5"] == 0.0 and metrics["HR@10"] == 1.0
    assert metrics["MRR"] == pytest.approx(1 / 6)  # 6 and 7 tie with UNK and each other → rank 6
    assert evaluate_baseline(markov, ev, V, batch_size=1) == metrics
    pop = evaluate_baseline(PopularityBaseline.fit(train, V), ev, V)
    assert pop["MRR"] == pytest.approx(1 / 6)
    # the MovieLens reference protocol: the history's items are not candidates; 4 and 5 gone → 8 first,
    # then UNK/6/7 tied → rank 4 for both rows; with a window of 1 only 5 goes → rank 5
    assert evaluate_baseline(markov, ev, V, seen_window=200)["MRR"] == pytest.approx(1 / 4)
    assert evaluate_baseline(markov, ev, V, seen_window=1)["MRR"] == pytest.approx(1 / 5)
