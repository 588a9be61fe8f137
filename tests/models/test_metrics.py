"""Full-ranking metrics on hand-computed cases: ties, excluded ids, NaN, torch/numpy agreement."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch

import models.metrics
from models.metrics import exclude_seen, ranking_metrics, target_ranks


def test_doctests() -> None:
    assert doctest.testmod(models.metrics).failed == 0


SCORES = np.array(
    [
        [9.0, 0.1, 0.7, 0.7, 0.2],  # target 2 ties with 3 → pessimistic rank 2 (PAD's 9.0 excluded)
        [0.0, 0.5, 0.4, 0.3, 0.2],  # target 1 is the best → 1
        [0.0, 0.5, 0.4, 0.3, 0.2],  # target 4 is the worst of the 4 candidates → 4
        [0.0, 0.3, 0.3, 0.3, 0.3],  # all tied → last (4)
    ]
)
TARGETS = np.array([2, 1, 4, 3])


def test_ranks_hand_computed_with_ties_and_pad_excluded() -> None:
    assert target_ranks(SCORES, TARGETS).tolist() == [2, 1, 4, 4]


def test_excluded_ids_never_outrank() -> None:
    # row 3's target is itself excluded: it still competes with the 3 remaining candidates (all tied)
    assert target_ranks(SCORES, TARGETS, exclude=(0, 3)).tolist() == [1, 1, 3, 4]
    assert target_ranks(SCORES, TARGETS, exclude=()).tolist() == [3, 1, 4, 4]  # PAD's 9.0 now counts
    assert target_ranks(SCORES, TARGETS, exclude=(0, 99)).tolist() == [2, 1, 4, 4]  # out of range ignored


def test_torch_matches_numpy_and_keeps_type() -> None:
    ranks = target_ranks(torch.tensor(SCORES), torch.tensor(TARGETS), exclude=(0, 3))
    assert isinstance(ranks, torch.Tensor) and ranks.dtype == torch.int64
    assert ranks.tolist() == target_ranks(SCORES, TARGETS, exclude=(0, 3)).tolist()
    random = np.random.default_rng(0).integers(0, 5, (50, 30)).astype(np.float32)  # many ties
    targets = np.random.default_rng(1).integers(1, 30, 50)
    assert torch.equal(
        target_ranks(torch.from_numpy(random), torch.from_numpy(targets)),
        torch.from_numpy(target_ranks(random, targets)),
    )


def test_ranks_against_a_brute_force_definition() -> None:
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 4, (40, 12)).astype(np.float64)
    targets = rng.integers(0, 12, 40)
    exclude = (0, 5)
    expected = []
    for row, t in zip(scores, targets, strict=True):
        others = [j for j in range(12) if j != t and j not in exclude]
        expected.append(1 + sum(row[j] >= row[t] for j in others))
    assert target_ranks(scores, targets, exclude=exclude).tolist() == expected


def test_nan_target_ranks_last_and_nan_candidates_never_win() -> None:
    scores = np.array([[0.0, np.nan, 0.5, 0.1], [0.0, 0.2, np.nan, 0.1]])
    assert target_ranks(scores, np.array([1, 3])).tolist() == [3, 2]
    assert target_ranks(torch.tensor(scores), torch.tensor([1, 3])).tolist() == [3, 2]


def test_metrics_hand_computed() -> None:
    m = ranking_metrics([1, 2, 4, 11], ks=(1, 5, 10))
    assert m["n"] == 4
    assert m["HR@1"] == pytest.approx(0.25) and m["HR@5"] == pytest.approx(0.75) and m["HR@10"] == 0.75
    ndcg10 = (1 + 1 / math.log2(3) + 1 / math.log2(5) + 0) / 4
    assert m["NDCG@10"] == pytest.approx(ndcg10)
    assert m["NDCG@1"] == pytest.approx(0.25)
    assert m["MRR"] == pytest.approx((1 + 1 / 2 + 1 / 4 + 1 / 11) / 4)
    assert ranking_metrics(torch.tensor([1, 2, 4, 11])) == m


def test_empty_metrics_are_none_not_nan() -> None:
    m = ranking_metrics(np.zeros(0, dtype=np.int64))
    assert m["n"] == 0 and m["HR@10"] is None and m["MRR"] is None


def test_exclude_seen_drops_history_items_and_a_seen_target_is_a_miss() -> None:
    seen = np.array([[3, 0], [2, 3], [0, 0], [3, 0]])  # PAD-padded history windows
    filtered = exclude_seen(SCORES, seen)
    assert np.isneginf(filtered[0, 3]) and filtered[0, 2] == SCORES[0, 2]  # a copy, input untouched
    assert not np.isneginf(SCORES).any()
    # row 0: the tie with 3 is gone → 1; row 1: 2 and 3 removed, still 1; row 2: nothing seen → 4;
    # row 3: the target itself was seen → ranks after every candidate (a miss)
    assert target_ranks(filtered, TARGETS).tolist() == [1, 1, 4, 4]
    torch_filtered = exclude_seen(torch.tensor(SCORES), torch.tensor(seen))
    assert target_ranks(torch_filtered, torch.tensor(TARGETS)).tolist() == [1, 1, 4, 4]
    rng = np.random.default_rng(3)
    scores, history = rng.normal(size=(30, 12)), rng.integers(0, 12, (30, 4))
    targets = np.array([next(t for t in range(1, 12) if t not in row) for row in history])
    # an unseen target can only move up, by exactly the seen candidates that outscored it
    before, after = target_ranks(scores, targets), target_ranks(exclude_seen(scores, history), targets)
    beaten_by_seen = [
        len({int(j) for j in row if j != 0 and s[j] >= s[t]})
        for s, row, t in zip(scores, history, targets, strict=True)
    ]
    assert (before - after).tolist() == beaten_by_seen
