"""Deviation arithmetic by hand; the replayed μ_u/σ_u equal the batch computation over past P's."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch

import models.fraud.deviation
from models.fraud.dataset import build_fraud_data
from models.fraud.deviation import DEVIATION_NAMES, DeviationConfig, deviation_features
from models.fraud.features import FeatureSchema


def test_doctests() -> None:
    assert doctest.testmod(models.fraud.deviation).failed == 0


def test_hand_computed_case() -> None:
    past = np.array([0.30, 0.25, 0.35, 0.20, 0.40, 0.30])  # the user's past predicted probabilities
    mu, sigma = past.mean(), past.std()  # 0.3, 0.0645…
    logs = np.log(past)
    stats = torch.tensor([[len(past), mu, sigma, logs.mean(), logs.std()]], dtype=torch.float64)
    p = 0.12
    out = deviation_features(torch.tensor([math.log(p)]), stats, DeviationConfig(min_history=5))[0]
    values = dict(zip(DEVIATION_NAMES, out.tolist(), strict=True))
    assert values["deviation"] == pytest.approx((0.12 - 0.3) / 0.0645497, rel=1e-4)  # ≈ −2.79
    assert values["deviation_log"] == pytest.approx((math.log(0.12) - logs.mean()) / logs.std(), rel=1e-5)
    assert values["surprise"] == pytest.approx(-math.log(0.12), rel=1e-6)
    assert values["probability"] == pytest.approx(0.12, rel=1e-6)
    assert values["cold"] == 0.0


def test_cold_users_floors_and_clipping() -> None:
    config = DeviationConfig(min_history=3, sigma_floor=0.01, clip=10.0)
    stats = torch.tensor([[2.0, 0.5, 0.1, -1.0, 0.2], [5.0, 0.5, 0.0, -1.0, 0.0]], dtype=torch.float64)
    out = deviation_features(torch.log(torch.tensor([0.01, 0.01])), stats, config)
    assert out[0, 0] == 0.0 and out[0, 1] == 0.0 and out[0, 4] == 1.0  # cold: Δ = 0, flag set
    assert out[1, 0] == -10.0  # (0.01 − 0.5) / floor 0.01 = −49 → clipped
    assert out[1, 4] == 0.0


def test_replayed_statistics_equal_batch_over_past_predictions(tiny) -> None:
    schema = FeatureSchema.fit(tiny.txns)
    data = build_fraud_data(tiny.txns, tiny.tokenizer, schema, tiny.model, tiny.profiles,
                            tiny.profile_schema)
    probs = np.exp(data.logp.astype(np.float64))
    for u in range(0, len(data.seqs), 7):
        lo, hi = data.seqs.offsets[u], data.seqs.offsets[u + 1]
        for j in range(lo, hi):
            past = probs[lo:j]
            n, mu, sigma, mu_log, sigma_log = data.prob_stats[j]
            assert n == len(past)
            if len(past):
                np.testing.assert_allclose([mu, sigma], [past.mean(), past.std()], rtol=1e-9, atol=1e-12)
                np.testing.assert_allclose([mu_log, sigma_log], [np.log(past).mean(), np.log(past).std()],
                                           rtol=1e-9, atol=1e-12)
    warm = data.prob_stats[:, 0] >= DeviationConfig().min_history
    assert (data.deviation[~warm, 0] == 0).all() and (data.deviation[warm, 4] == 0).all()
