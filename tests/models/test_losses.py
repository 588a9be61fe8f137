"""Next-token losses: full softmax against a plain reference, chunking, sampled softmax sanity."""

from __future__ import annotations

import doctest

import pytest
import torch
import torch.nn.functional as F

import models.losses
from models.batch import PAD_ID
from models.losses import FullSoftmaxLoss, LossConfig, SampledSoftmaxLoss
from models.tokenizer.reserved import FIRST_TOKEN_ID, NON_TARGET_IDS, UNK_ID


def test_doctests() -> None:
    assert doctest.testmod(models.losses).failed == 0


def _data(n: int = 50, v: int = 40, d: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    targets = torch.randint(FIRST_TOKEN_ID, v, (n,))
    targets[:3] = UNK_ID  # UNK is a real outcome
    return torch.randn(n, d, requires_grad=True), targets, torch.randn(v, d, requires_grad=True)


def test_full_softmax_matches_reference_and_chunking_is_exact() -> None:
    q, t, table = _data()
    logits = (q @ table.T).index_fill(1, torch.tensor(NON_TARGET_IDS), float("-inf"))
    reference = F.cross_entropy(logits, t)
    ref_grad = torch.autograd.grad(reference, [q, table])
    for chunk in (7, 50, 4096):
        loss = FullSoftmaxLoss(chunk_size=chunk)(q, t, table)
        torch.testing.assert_close(loss, reference)
        for g, r in zip(torch.autograd.grad(loss, [q, table]), ref_grad, strict=True):
            torch.testing.assert_close(g, r)


def test_full_softmax_never_scores_reserved_ids() -> None:
    q = torch.tensor([[1.0, 0.0]])
    table = torch.tensor(
        [[100.0, 0.0], [0.0, 1.0], [100.0, 0.0], [100.0, 0.0], [0.0, 1.0]]
    )  # PAD, UNK, MASK, PROFILE, a
    assert sorted(NON_TARGET_IDS) == [PAD_ID, 2, 3]
    assert FullSoftmaxLoss()(q, torch.tensor([4]), table).item() == pytest.approx(
        torch.log(torch.tensor(2.0)).item()
    )


@pytest.mark.parametrize("sampler", ["uniform", "uniform_shared", "in_batch"])
def test_sampled_softmax_sanity(sampler: str) -> None:
    q, t, table = _data(n=64, v=200)
    loss_fn = SampledSoftmaxLoss(n_negatives=16, temperature=1.0, sampler=sampler, chunk_size=10)
    loss = loss_fn(q, t, table)
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(table.grad).all()
    # perfect queries (the target's own direction, sharp temperature) drive the loss towards 0
    eye_table = torch.eye(200)
    sharp = SampledSoftmaxLoss(n_negatives=16, temperature=0.01, sampler=sampler)
    assert sharp(eye_table[t], t, eye_table).item() < 1e-3


@pytest.mark.parametrize("sampler", ["uniform", "uniform_shared"])
def test_uniform_sampling_masks_accidental_hits(sampler: str) -> None:
    # vocabulary {PAD, 1}: every negative equals the target and must be masked → loss exactly 0
    table = torch.randn(2, 4)
    q = torch.randn(5, 4)
    loss_fn = SampledSoftmaxLoss(n_negatives=8, temperature=1.0, sampler=sampler)
    loss = loss_fn(q, torch.ones(5, dtype=torch.long), table)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_in_batch_logq_correction() -> None:
    # all queries zero → logits = −log q; the loss equals the CE of uniform-corrected candidates
    t = torch.tensor([3, 3, 3, 5])
    loss = SampledSoftmaxLoss(sampler="in_batch", temperature=1.0)(torch.zeros(4, 2), t, torch.randn(10, 2))
    log_q = torch.tensor([0.75, 0.25]).log()
    expected = F.cross_entropy((-log_q).expand(4, 2), torch.tensor([0, 0, 0, 1]))
    torch.testing.assert_close(loss, expected)


def test_loss_config_builds_and_validates() -> None:
    assert isinstance(LossConfig().build(), FullSoftmaxLoss)
    assert isinstance(LossConfig(kind="sampled", sampler="in_batch").build(), SampledSoftmaxLoss)
    with pytest.raises(ValueError, match="loss kind"):
        LossConfig(kind="hinge").build()
    with pytest.raises(ValueError, match="sampler"):
        SampledSoftmaxLoss(sampler="popular")


def test_shared_and_per_row_negatives_agree_in_expectation() -> None:
    # same queries, many draws: the two uniform samplers estimate the same loss
    q, t, table = _data(n=300, v=50)
    means = {}
    for sampler in ("uniform", "uniform_shared"):
        torch.manual_seed(0)
        loss_fn = SampledSoftmaxLoss(n_negatives=8, temperature=1.0, sampler=sampler)
        with torch.no_grad():
            means[sampler] = torch.stack([loss_fn(q, t, table) for _ in range(200)]).mean().item()
    assert means["uniform_shared"] == pytest.approx(means["uniform"], rel=0.02)
