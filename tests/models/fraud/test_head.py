"""DCN, TextCNN and the hybrid head: shapes, padding invariance, training on a tiny labelled set."""

from __future__ import annotations

import doctest
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import models.fraud.dcn
import models.fraud.head
import models.fraud.textcnn
from models.fraud.api import fit_variant
from models.fraud.dataset import FraudData, build_fraud_data, chronological_split
from models.fraud.dcn import DCN, DCNConfig
from models.fraud.features import NUMERIC_NAMES, FeatureSchema
from models.fraud.head import FraudHead, HeadConfig, PiecewiseLinear, head_config
from models.fraud.textcnn import TextCNN, TextCNNConfig
from models.fraud.train import FitConfig, predict_logits


@pytest.mark.parametrize("module", [models.fraud.dcn, models.fraud.head, models.fraud.textcnn])
def test_doctests(module) -> None:
    assert doctest.testmod(module).failed == 0


def test_low_rank_cross_and_gradients() -> None:
    net = DCN(DCNConfig(input_dim=10, cross_layers=2, cross_rank=3, deep_dims=(16, 8)))
    x = torch.randn(5, 10, requires_grad=True)
    net(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_textcnn_ignores_padding() -> None:
    torch.manual_seed(0)
    enc = TextCNN(TextCNNConfig(vocab_size=20, embed_dim=8, kernels=(2, 3), filters=4, dropout=0.0)).eval()
    short = enc(torch.tensor([[5, 6, 7]]), torch.tensor([3]))
    padded = enc(torch.tensor([[5, 6, 7, 0, 0, 0]]), torch.tensor([3]))
    garbage = enc(torch.tensor([[5, 6, 7, 9, 9, 9]]), torch.tensor([3]))
    torch.testing.assert_close(short, padded)
    torch.testing.assert_close(short, garbage)


@pytest.fixture(scope="module")
def planted(tiny) -> FraudData:
    """The tiny frame's inputs with a planted label: 'amount more than 2σ above the user's usual'."""
    schema = FeatureSchema.fit(tiny.txns)
    data = build_fraud_data(tiny.txns, tiny.tokenizer, schema, tiny.model, tiny.profiles, tiny.profile_schema)
    return replace(data, labels=data.features[:, NUMERIC_NAMES.index("amount_z")] > 2.0)


@pytest.mark.parametrize(("variant", "encoding"), [("dcn", "standard"), ("hybrid_panther", "standard"),
                                                  ("hybrid_textcnn", "standard"), ("hybrid_textcnn", "ple")])
def test_head_trains_on_a_tiny_planted_set(tiny, planted: FraudData, variant: str, encoding: str) -> None:
    labels = planted.labels
    assert labels is not None
    train, val, test, _ = chronological_split(planted.times, 0.7, 0.2)
    assert labels[train].sum() > 10 and labels[test].sum() > 5
    fit = FitConfig(epochs=5, batch_size=32, lr=3e-3, patience=5)
    result = fit_variant(planted, train, val, variant, fit, tiny.model, deep_dims=(32,), cross_layers=2,
                         numeric_encoding=encoding)
    # ~80 positives and ~80 features: it fits the training set and generalizes, if not perfectly
    assert roc_auc_score(labels[train], predict_logits(result.head, planted, train)) > 0.97
    assert roc_auc_score(labels[test], predict_logits(result.head, planted, test)) > 0.75
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    vocab = result.head.config.vocab_size
    assert result.head.config == head_config(variant, planted.features.shape[1], 16, vocab,
                                             deep_dims=(32,), cross_layers=2, numeric_encoding=encoding)


def test_a_base_logit_is_added_in_training_and_prediction(tiny, planted: FraudData) -> None:
    """Residual stacking: the head learns what a fixed base logit (another model's score) misses."""
    labels = planted.labels
    assert labels is not None
    train, val, _, _ = chronological_split(planted.times, 0.7, 0.2)
    rng = np.random.default_rng(0)
    knows = rng.random(len(labels)) < 0.5  # the base model catches half of the frauds, surely
    base = np.where(labels & knows, 6.0, 0.0).astype(np.float32)
    stacked = replace(planted, base_logit=base)
    fit = FitConfig(epochs=5, batch_size=32, lr=3e-3, patience=5)
    result = fit_variant(stacked, train, val, "dcn", fit, tiny.model, deep_dims=(32,), cross_layers=2)
    with_base = predict_logits(result.head, stacked, train)
    alone = predict_logits(result.head, planted, train)
    np.testing.assert_allclose(with_base - alone, base[train], atol=1e-5)
    missed = train[~knows[train]]  # the head alone must find the frauds the base logit does not know
    assert roc_auc_score(labels[missed], with_base[~knows[train]]) > 0.95
    assert len(missed) and labels[missed].sum() > 5
    perfect = replace(planted, base_logit=np.where(labels, 8.0, -8.0).astype(np.float32))
    one_epoch = FitConfig(epochs=1, batch_size=32, lr=3e-3)
    trained = fit_variant(perfect, train, val, "dcn", one_epoch, tiny.model, deep_dims=(32,), cross_layers=2)
    assert trained.history[0]["loss"] < 0.05  # the loss saw the base: nothing was left to learn


def test_piecewise_linear_encoding_of_known_bins() -> None:
    ple = PiecewiseLinear(1, 4)
    ple.fit(torch.arange(0.0, 9.0).unsqueeze(1))  # quartile edges 0, 2, 4, 6, 8
    torch.testing.assert_close(ple.lower[0], torch.tensor([0.0, 2.0, 4.0, 6.0]))
    x = torch.tensor([[-2.0], [0.0], [3.0], [8.0], [12.0]])
    expected = torch.tensor([
        [-1.0, 0.0, 0.0, 0.0],  # below the first edge: the open first bin extrapolates
        [0.0, 0.0, 0.0, 0.0],
        [1.0, 0.5, 0.0, 0.0],
        [1.0, 1.0, 1.0, 1.0],
        [1.0, 1.0, 1.0, 3.0],  # above the last edge: the open last bin extrapolates
    ])
    torch.testing.assert_close(ple(x), expected)


def test_piecewise_linear_flags_and_constants_stay_finite() -> None:
    ple = PiecewiseLinear(2, 8)
    flag = (torch.arange(100) % 10 == 0).float()  # 10 % ones: every edge but the last is 0
    ple.fit(torch.stack([flag, torch.zeros(100)], dim=1))
    out = ple(torch.tensor([[0.0, 0.0], [1.0, 5.0], [-3.0, -5.0]]))
    assert torch.isfinite(out).all() and out.abs().max() <= 5.0
    assert out[1, :8].sum() > out[0, :8].sum()  # the flag's encoding separates 0 from 1


def test_ple_head_round_trips_and_keeps_attribution_blocks(planted: FraudData) -> None:
    config = head_config("dcn", planted.features.shape[1], numeric_encoding="ple", ple_bins=4, deep_dims=(8,))
    assert config.n_numeric == len(NUMERIC_NAMES) and config.psi_input_dim() == (
        len(NUMERIC_NAMES) * 4 + planted.features.shape[1] - len(NUMERIC_NAMES))
    head = FraudHead(config)
    inputs = planted.head_inputs(np.arange(len(planted)), config)
    head.fit_normalization(inputs)
    head.eval()
    again = FraudHead(HeadConfig.from_dict(json.loads(json.dumps(config.to_dict()))))
    again.load_state_dict(head.state_dict())
    again.eval()
    torch.testing.assert_close(again(inputs), head(inputs))
    assert head.blocks(inputs)["txn"].shape == inputs.features.shape  # reasons still see the features
    with pytest.raises(ValueError, match="numeric_encoding"):
        head_config("dcn", 40, numeric_encoding="splines")
