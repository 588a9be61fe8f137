"""Fraud metrics on hand-made scores."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import models.fraud.metrics
from models.fraud.metrics import (
    alert_count,
    caught_at_top,
    fraud_metrics,
    paired_at_budget,
    recall_at_threshold,
    sign_test,
    threshold_for_rate,
)


def test_doctests() -> None:
    assert doctest.testmod(models.fraud.metrics).failed == 0


def test_recall_precision_at_top_k_by_hand() -> None:
    # 1000 transactions, 10 fraud; fraud at score ranks 1, 2, 5, 15, 50, 200, 500, 600, 700, 999
    n = 1000
    scores = np.linspace(1.0, 0.0, n)  # rank r (1-based) has the r-th highest score
    labels = np.zeros(n, dtype=bool)
    labels[[0, 1, 4, 14, 49, 199, 499, 599, 699, 998]] = True
    m = fraud_metrics(scores, labels, ks=(0.1, 1, 10))
    assert alert_count(n, 0.1) == 1 and alert_count(n, 1) == 10 and alert_count(n, 10) == 100
    assert m["recall@0.1%"] == pytest.approx(0.1)  # 1 alert, it is fraud
    assert m["recall_cap@0.1%"] == pytest.approx(0.1) and m["recall_cap@1%"] == 1.0
    assert m["precision@0.1%"] == pytest.approx(1.0)
    assert m["recall@1%"] == pytest.approx(0.3)  # top 10: ranks 1, 2, 5
    assert m["precision@1%"] == pytest.approx(0.3)
    assert m["recall@10%"] == pytest.approx(0.5)  # top 100: + 15, 50
    assert m["precision@10%"] == pytest.approx(0.05)
    assert m["n"] == n and m["fraud"] == 10
    assert 0.0 < m["pr_auc"] < 1.0 and 0.5 < m["roc_auc"] < 1.0


def test_perfect_and_constant_scores() -> None:
    labels = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0], dtype=bool)
    perfect = fraud_metrics(labels.astype(float), labels, ks=(20,))
    assert perfect["recall@20%"] == 1.0 and perfect["pr_auc"] == 1.0 and perfect["roc_auc"] == 1.0
    flat = fraud_metrics(np.zeros(10), labels, ks=(20,))  # ties split evenly: 2 alerts × 2/10
    assert flat["recall@20%"] == pytest.approx(0.2)
    assert flat["roc_auc"] == pytest.approx(0.5)


def test_ties_at_the_cut_are_split_evenly() -> None:
    caught = caught_at_top(np.array([3.0, 2.0, 2.0, 2.0, 1.0]), np.array([0, 1, 0, 0, 1]), 2)
    assert caught == pytest.approx(1 / 3)


def test_per_scenario_recall() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.05, 0.0])
    labels = np.array([1, 0, 1, 1, 0, 0], dtype=bool)
    scenarios = np.array(["ato", None, "card", "ato", None, None], dtype=object)
    m = fraud_metrics(scores, labels, scenarios, ks=(50,))
    assert m["per_scenario"]["ato"] == {"fraud": 2, "recall@50%": 0.5}
    assert m["per_scenario"]["card"] == {"fraud": 1, "recall@50%": 1.0}


def test_threshold_round_trip() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random(10_000)
    labels = rng.random(10_000) < 0.01
    threshold = threshold_for_rate(scores, 1.0)
    at = recall_at_threshold(scores, labels, threshold)
    assert at["alert_rate"] == pytest.approx(0.01, abs=1e-4)
    assert at["recall"] == pytest.approx(fraud_metrics(scores, labels)["recall@1%"], abs=1e-9)


def test_paired_split_adds_up_to_the_recall_difference() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(5000) < 0.02
    a = rng.random(5000) + labels * rng.random(5000)
    b = rng.random(5000) + labels * rng.random(5000)
    for k in (1, 10):
        pair = paired_at_budget(a, b, labels, k)
        gap = (fraud_metrics(a, labels, ks=(k,))[f"recall@{k}%"]
               - fraud_metrics(b, labels, ks=(k,))[f"recall@{k}%"]) * labels.sum()
        assert pair["only_a"] - pair["only_b"] == round(gap)
        assert 0.0 < pair["p_value"] <= 1.0
    assert paired_at_budget(a, a, labels, 1) == {"only_a": 0, "only_b": 0, "p_value": 1.0}
    assert sign_test(30, 0) < 1e-8 and sign_test(5, 5) == 1.0
