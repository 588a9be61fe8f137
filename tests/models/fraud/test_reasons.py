"""Reasons: a planted dominant signal ranks first; contributions add up to logit − baseline logit."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import torch

import models.fraud.reasons
from models.fraud.features import FeatureSchema
from models.fraud.head import FraudHead, HeadInputs, head_config
from models.fraud.live import top_reasons
from models.fraud.reasons import SignalMap, integrated_gradients


def test_doctests() -> None:
    assert doctest.testmod(models.fraud.reasons).failed == 0


def _trained_head(dominant: int) -> tuple[FraudHead, FeatureSchema, HeadInputs]:
    torch.manual_seed(0)
    schema = FeatureSchema.fit(pd.DataFrame({"merchant_category": ["a", "b"], "channel": ["x", "y"]}))
    n, f = 2048, schema.width
    x = torch.randn(n, f)
    y = (x[:, dominant] > 1.0).float()
    inputs = HeadInputs(x, hidden=torch.randn(n, 8), user=torch.randn(n, 8), deviation=torch.randn(n, 5))
    head = FraudHead(head_config("hybrid_panther", f, d_model=8, deep_dims=(32,), cross_layers=2, dropout=0.0,
                                 block_dropout=0.0))
    head.fit_normalization(inputs)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(100):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(inputs), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return head.eval(), schema, inputs


def test_planted_dominant_signal_ranks_first() -> None:
    dominant = 15  # "velocity_1h"
    head, schema, inputs = _trained_head(dominant)
    assert schema.signals[dominant] == "velocity_1h"
    signals = SignalMap.build(head, schema.signals)
    assert {"sequence", "user_profile", "deviation", "surprise", "velocity_1h"} <= set(signals.names)
    fraud_like = inputs.features[:, dominant] > 2.0
    sub = HeadInputs(inputs.features[fraud_like], inputs.hidden[fraud_like], user=inputs.user[fraud_like],
                     deviation=inputs.deviation[fraud_like])
    contributions = integrated_gradients(head, head.blocks(sub), signals, steps=16).numpy()
    top = [top_reasons(row, signals.names, k=1)[0]["signal"] for row in contributions]
    assert np.mean([t == "velocity_1h" for t in top]) > 0.95


def test_contributions_add_up_to_the_logit_difference() -> None:
    head, schema, inputs = _trained_head(3)
    signals = SignalMap.build(head, schema.signals)
    sub = HeadInputs(inputs.features[:64], inputs.hidden[:64], user=inputs.user[:64],
                     deviation=inputs.deviation[:64])
    blocks = head.blocks(sub)
    with torch.no_grad():
        gap = head.fuse(blocks) - head.fuse(head.baselines(blocks))
    total = integrated_gradients(head, blocks, signals, steps=64).sum(dim=1)
    torch.testing.assert_close(total, gap, rtol=0.05, atol=0.05)
