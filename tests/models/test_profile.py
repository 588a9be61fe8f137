"""Profile encoder, demographic positives and the InfoNCE term."""

from __future__ import annotations

import doctest
import math

import torch

import models.profile
from models.batch import SequenceBatch
from models.losses import FullSoftmaxLoss
from models.panther import PantherModel, panther_config
from models.profile import DemographicRule, ProfileEncoder, info_nce

NAN = float("nan")


def test_doctests() -> None:
    assert doctest.testmod(models.profile).failed == 0


def test_profile_encoder_fields_and_unknown_ids() -> None:
    torch.manual_seed(0)
    enc = ProfileEncoder([3, 4], d_model=6)
    a = enc(torch.tensor([[1, 2]]))
    assert a.shape == (1, 6)
    assert not torch.allclose(a, enc(torch.tensor([[1, 3]])))  # the second field matters
    torch.testing.assert_close(enc(torch.tensor([[1, 9]])), enc(torch.tensor([[1, 0]])))  # unseen → missing
    torch.testing.assert_close(enc(torch.tensor([[-1, 2]])), enc(torch.tensor([[0, 2]])))


def test_demographic_rule_default_age_and_region() -> None:
    demo = torch.tensor([[30.0, 1.0], [32.0, 1.0], [33.0, 1.0], [30.0, 2.0], [NAN, 1.0], [31.0, NAN]])
    pos = DemographicRule().positives(demo)
    expected = torch.zeros(6, 6, dtype=torch.bool)
    for i, j in [(0, 1), (1, 2)]:
        expected[i, j] = expected[j, i] = True
    assert torch.equal(pos, expected)
    assert torch.equal(DemographicRule((100.0,)).positives(demo[:4]), ~torch.eye(4, dtype=torch.bool))
    assert not DemographicRule(()).positives(demo).any()  # no demographic columns → nobody is alike


def test_info_nce_hand_case() -> None:
    pos = torch.zeros(4, 4, dtype=torch.bool)
    pos[0, 1] = pos[1, 0] = True  # rows 2 and 3 have no positive: skipped
    aligned = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    apart = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])
    tau = 0.5
    low, high = info_nce(aligned, pos, tau), info_nce(apart, pos, tau)
    assert low < high
    # hand value for `aligned`, anchor 0: sims to 1, 2, 3 = 1, 0, −1
    expected = -(1 / tau - math.log(math.exp(1 / tau) + math.exp(0) + math.exp(-1 / tau)))
    assert math.isclose(low.item(), expected, rel_tol=1e-5)


def test_info_nce_without_positives_is_zero_and_differentiable() -> None:
    z = torch.randn(3, 4, requires_grad=True)
    loss = info_nce(z, torch.zeros(3, 3, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and z.grad is not None


def test_contrastive_term_enters_the_total_loss() -> None:
    torch.manual_seed(0)
    config = panther_config(
        20, (3, 3), d_model=8, n_layers=1, n_heads=1, max_len=6, n_prototypes=4, contrastive_weight=0.5
    )
    model = PantherModel(config)
    tokens = torch.randint(2, 20, (4, 7))
    batch = SequenceBatch(
        tokens=tokens[:, :6],
        lengths=torch.tensor([6, 6, 4, 2]),
        profile=torch.tensor([[1, 1], [1, 2], [2, 1], [0, 0]]),
        targets=tokens[:, 1:],
        demographics=torch.tensor([[30.0, 1.0], [31.0, 1.0], [50.0, 2.0], [51.0, 2.0]]),
    )
    parts = model.training_loss(batch, FullSoftmaxLoss())
    assert parts.contrastive.item() > 0
    torch.testing.assert_close(parts.total.detach(), parts.generative + 0.5 * parts.contrastive)
    no_demo = model.training_loss(
        SequenceBatch(**{**batch.__dict__, "demographics": None}), FullSoftmaxLoss()
    )
    assert no_demo.contrastive.item() == 0.0
