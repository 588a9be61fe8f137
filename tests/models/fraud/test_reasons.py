"""Reasons: every input dimension maps to its signal; only what differs from the baseline gets credit;
IG's formula at one step; a planted dominant signal ranks first; contributions add up to the logit gap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from models.fraud.deviation import DEVIATION_NAMES
from models.fraud.features import FeatureSchema
from models.fraud.head import FraudHead, HeadInputs, head_config
from models.fraud.live import top_reasons
from models.fraud.reasons import SignalMap, integrated_gradients


def _schema() -> FeatureSchema:
    return FeatureSchema.fit(pd.DataFrame({"merchant_category": ["a", "b"], "channel": ["x", "y"]}))


def _untrained_head(variant: str, schema: FeatureSchema) -> FraudHead:
    """Random weights are enough where the property holds for any head (dropout off: eval)."""
    torch.manual_seed(1)
    return FraudHead(head_config(variant, schema.width, d_model=8, vocab_size=20, deep_dims=(16,),
                                 cross_layers=2)).eval()


def _zero_blocks(head: FraudHead, schema: FeatureSchema, n: int) -> dict[str, torch.Tensor]:
    """Every block at its baseline (0 after standardization for a PANTHER head)."""
    inputs = HeadInputs(torch.zeros(n, schema.width), hidden=torch.zeros(n, 8), user=torch.zeros(n, 8),
                        deviation=torch.zeros(n, len(DEVIATION_NAMES)))
    return {name: torch.zeros_like(x) for name, x in head.blocks(inputs).items()}


def test_signal_map_names_every_dimension_of_every_block() -> None:
    schema = _schema()
    head = _untrained_head("hybrid_panther", schema)
    signals = SignalMap.build(head, schema.signals)
    features = list(dict.fromkeys(schema.signals))  # first-seen order, one column per signal
    assert signals.names == (*features, "sequence", "user_profile", "deviation", "surprise")
    blocks = _zero_blocks(head, schema, 1)
    assert set(signals.index) == set(blocks)
    for name, x in blocks.items():
        assert signals.index[name].shape == (x.shape[1],), name
    assert [signals.names[i] for i in signals.index["txn"].tolist()] == schema.signals
    assert {signals.names[i] for i in signals.index["sequence"].tolist()} == {"sequence"}
    assert {signals.names[i] for i in signals.index["user"].tolist()} == {"user_profile"}
    assert DEVIATION_NAMES == ("deviation", "deviation_log", "surprise", "probability", "cold")
    assert [signals.names[i] for i in signals.index["deviation"].tolist()] == [
        "deviation", "deviation", "surprise", "surprise", "deviation"]

    dcn = _untrained_head("dcn", schema)  # transaction features alone: no sequence, e_u or deviation
    alone = SignalMap.build(dcn, schema.signals)
    assert alone.names == tuple(features) and set(alone.index) == {"txn"}


def test_only_what_differs_from_the_baseline_gets_credit() -> None:
    schema = _schema()
    head = _untrained_head("hybrid_panther", schema)
    signals = SignalMap.build(head, schema.signals)
    blocks = _zero_blocks(head, schema, 3)
    dominant = schema.names.index("velocity_1h")
    blocks["txn"][1, dominant] = 3.0
    blocks["deviation"][2, DEVIATION_NAMES.index("cold")] = -2.0
    contributions = integrated_gradients(head, blocks, signals, steps=32)
    assert contributions.shape == (3, len(signals.names))
    assert torch.count_nonzero(contributions[0]) == 0  # an average transaction: no reason at all
    for row, signal in ((1, "velocity_1h"), (2, "deviation")):
        column = signals.names.index(signal)
        others = torch.cat([contributions[row, :column], contributions[row, column + 1:]])
        assert torch.count_nonzero(others) == 0 and contributions[row, column].abs() > 1e-4, signal
    with torch.no_grad():
        gap = head.fuse(blocks) - head.fuse(head.baselines(blocks))
    torch.testing.assert_close(contributions.sum(dim=1), gap, rtol=0.02, atol=1e-3)


def test_a_textcnn_sequence_is_measured_from_its_mean_encoding_not_from_zero() -> None:
    schema = _schema()
    head = _untrained_head("hybrid_textcnn", schema)
    signals = SignalMap.build(head, schema.signals)
    torch.manual_seed(3)
    width = head.config.sequence_dim()
    head.sequence_baseline.copy_(torch.randn(width))
    blocks = {"txn": torch.zeros(2, schema.width), "sequence": head.sequence_baseline.repeat(2, 1),
              "user": torch.zeros(2, 8), "deviation": torch.zeros(2, len(DEVIATION_NAMES))}
    blocks["sequence"][1] += torch.randn(width)
    contributions = integrated_gradients(head, blocks, signals, steps=32)
    assert torch.count_nonzero(contributions[0]) == 0  # the mean window explains nothing
    column = signals.names.index("sequence")
    assert torch.count_nonzero(contributions[1]) == 1 and contributions[1, column].abs() > 1e-4
    with torch.no_grad():
        gap = head.fuse(blocks) - head.fuse(head.baselines(blocks))
    torch.testing.assert_close(contributions.sum(dim=1), gap, rtol=0.02, atol=1e-3)


def test_one_step_is_gradient_times_input_at_the_midpoint() -> None:
    schema = _schema()
    head = _untrained_head("hybrid_panther", schema)
    signals = SignalMap.build(head, schema.signals)
    torch.manual_seed(2)
    blocks = {name: torch.randn_like(x) for name, x in _zero_blocks(head, schema, 4).items()}
    mid = {name: (x / 2).requires_grad_(True) for name, x in blocks.items()}  # baseline 0: x̄ + ½(x − x̄)
    grads = dict(zip(mid, torch.autograd.grad(head.fuse(mid).sum(), list(mid.values())), strict=True))
    expected = torch.zeros(4, len(signals.names))
    for name, x in blocks.items():
        for dim, column in enumerate(signals.index[name].tolist()):
            expected[:, column] += grads[name][:, dim] * x[:, dim]
    torch.testing.assert_close(integrated_gradients(head, blocks, signals, steps=1), expected)


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
