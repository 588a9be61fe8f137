"""Baselines: the rule score's behaviour, GBT on a planted rule."""

from __future__ import annotations

import doctest

import numpy as np
from sklearn.metrics import roc_auc_score

import models.fraud.baselines
from models.fraud.baselines import GBTBaseline, GBTConfig, rule_score
from models.fraud.features import NUMERIC_NAMES


def test_doctests() -> None:
    assert doctest.testmod(models.fraud.baselines).failed == 0


def test_rule_score_rises_with_amount_z_velocity_and_flags() -> None:
    names = list(NUMERIC_NAMES)
    base = np.zeros((5, len(names)))
    base[1, names.index("amount_z")] = 5.0
    base[2, names.index("velocity_1h")] = np.log1p(6)
    base[3, names.index("new_device")] = 1.0
    base[4, names.index("amount_z")] = 1.0  # below the 2σ threshold
    score = rule_score(base, names)
    assert score[0] == 0.0 and score[4] == 0.0
    assert score[1] > 0 and score[2] > 0 and score[3] > 0


def test_gbt_learns_a_planted_rule() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 6))
    y = (x[:, 2] > 1.5) & (x[:, 4] > 0)
    model = GBTBaseline(GBTConfig(max_iter=60)).fit(x[:2000], y[:2000], x[2000:2500], y[2000:2500])
    assert roc_auc_score(y[2500:], model.score(x[2500:])) > 0.97
