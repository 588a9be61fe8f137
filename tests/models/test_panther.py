"""PANTHER model: causality in every mode, padding invariance, profile modes, factories, overfitting."""

from __future__ import annotations

import dataclasses
import doctest

import pytest
import torch

import models.batch
import models.panther
from models.batch import PAD_ID, UNK_ID, SequenceBatch
from models.losses import FullSoftmaxLoss
from models.panther import (
    PantherConfig,
    PantherModel,
    ablation_configs,
    panther_config,
    sasrec_config,
    sprm_only_config,
)
from models.tokenizer.reserved import NON_TARGET_IDS

CARDS = (4, 3)
TINY = {"d_model": 16, "n_layers": 2, "n_heads": 2, "max_len": 12, "n_prototypes": 8, "dropout": 0.0}


def test_doctests() -> None:
    assert doctest.testmod(models.panther).failed == 0
    assert doctest.testmod(models.batch).failed == 0  # take_positions, what the serving read gathers with


def _batch(tokens: torch.Tensor, lengths: list[int], profile: torch.Tensor | None = None) -> SequenceBatch:
    b = tokens.shape[0]
    profile = torch.tensor([[1, 2], [3, 0], [2, 1]])[:b] if profile is None else profile
    return SequenceBatch(tokens=tokens, lengths=torch.tensor(lengths), profile=profile)


def _configs() -> dict[str, PantherConfig]:
    return {
        "sasrec": sasrec_config(30, **TINY),
        "sprm_only": sprm_only_config(30, **TINY),
        "positional": panther_config(30, CARDS, **TINY),
        "first_token": panther_config(30, CARDS, profile_mode="first_token", **TINY),
        "sprm_attention_naive": panther_config(30, CARDS, attention_impl="naive", **TINY),
        "sprm_no_attention": panther_config(30, CARDS, use_attention=False, **TINY),
        "scaled_embeddings": sasrec_config(30, scale_embeddings=True, **TINY),
    }


@pytest.mark.parametrize("name", list(_configs()))
def test_causal(name: str) -> None:
    torch.manual_seed(0)
    model = PantherModel(_configs()[name]).eval()
    tokens = torch.randint(2, 30, (3, 10))
    batch = _batch(tokens, [10, 10, 10])
    hidden = model(batch)
    assert hidden.shape == (3, 10, 16)
    for t in (0, 4, 8):
        changed = tokens.clone()
        changed[:, t + 1] = (changed[:, t + 1] + 1 - 2) % 28 + 2
        out = model(_batch(changed, [10, 10, 10]))
        torch.testing.assert_close(out[:, : t + 1], hidden[:, : t + 1])
        assert not torch.allclose(out[:, t + 1], hidden[:, t + 1])


def _read_configs() -> dict[str, PantherConfig]:
    one_block = {**TINY, "n_layers": 1}
    return {
        **_configs(),
        "one_block": panther_config(30, CARDS, **one_block),
        "position_bias": panther_config(30, CARDS, relative_bias="position", **TINY),
        "time_bias_first_token": panther_config(
            30, CARDS, relative_bias="position_time", profile_mode="first_token", **TINY
        ),
    }


@pytest.mark.parametrize("name", list(_read_configs()))
def test_hidden_at_equals_the_full_forward_read_at_those_positions(name: str) -> None:
    """The serving read (`hidden_at`: the last block only at the positions read) against the
    reference, the full forward gathered: every block kind, profile mode and bias, K positions per
    row in any order, repeated, on real and padded positions."""
    torch.manual_seed(0)
    model = PantherModel(_read_configs()[name]).eval()
    tokens = torch.randint(2, 30, (3, 10))
    lengths = [10, 4, 1]
    for row, length in enumerate(lengths):
        tokens[row, length:] = PAD_ID
    times = torch.cumsum(torch.randint(0, 10**7, (3, 10)), dim=1)
    batch = dataclasses.replace(_batch(tokens, lengths), times=times)
    positions = torch.tensor([[9, 0, 5], [3, 3, 2], [0, 7, 0]])
    with torch.no_grad():
        full = model(batch)
        expected = full.gather(1, positions.unsqueeze(-1).expand(-1, -1, full.shape[-1]))
        torch.testing.assert_close(model.hidden_at(batch, positions), expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model.hidden_at(batch, positions[:, :1]), expected[:, :1],
                                   rtol=1e-5, atol=1e-6)  # fmt: skip


@pytest.mark.parametrize("name", list(_configs()))
def test_padding_content_does_not_change_real_outputs(name: str) -> None:
    torch.manual_seed(0)
    model = PantherModel(_configs()[name]).eval()
    lengths = [3, 7, 10]
    tokens = torch.randint(2, 30, (3, 10))
    padded = tokens.clone()
    for row, n in enumerate(lengths):
        padded[row, n:] = PAD_ID
    garbage = tokens.clone()  # real content where padding should be: must not matter either
    a, b = model(_batch(padded, lengths)), model(_batch(garbage, lengths))
    mask = _batch(padded, lengths).padding_mask
    torch.testing.assert_close(a[mask], b[mask])
    # a shorter window gives the same real outputs as the same prefix in a longer window
    short = model(_batch(padded[:, :7], [3, 7, 7]))
    torch.testing.assert_close(short[0, :3], a[0, :3])
    torch.testing.assert_close(short[1, :7], a[1, :7])
    emb = model.sequence_embedding(_batch(padded, lengths))
    torch.testing.assert_close(emb, a[torch.arange(3), torch.tensor(lengths) - 1])


def test_profile_changes_outputs_only_with_a_profile_mode() -> None:
    torch.manual_seed(0)
    tokens = torch.randint(2, 30, (2, 6))
    p1, p2 = torch.tensor([[1, 2], [3, 0]]), torch.tensor([[2, 1], [0, 2]])
    for name, expect_change in [("sasrec", False), ("positional", True), ("first_token", True)]:
        model = PantherModel(_configs()[name]).eval()
        a = model(_batch(tokens, [6, 6], p1))
        b = model(_batch(tokens, [6, 6], p2))
        assert (not torch.allclose(a, b)) == expect_change, name


def test_user_embedding_and_logits() -> None:
    model = PantherModel(_configs()["positional"]).eval()
    profile = torch.tensor([[1, 2], [3, 0]])
    assert model.user_embedding(profile).shape == (2, 16)
    sasrec = PantherModel(_configs()["sasrec"])
    assert torch.equal(sasrec.user_embedding(profile), torch.zeros(2, 16))
    logits = model.logits(torch.randn(2, 5, 16))
    assert logits.shape == (2, 5, 30) and torch.isinf(logits[..., list(NON_TARGET_IDS)]).all()
    assert torch.isfinite(logits[..., UNK_ID]).all()


def test_max_len_enforced_and_first_token_positions() -> None:
    model = PantherModel(_configs()["first_token"])
    assert model.position_embedding.num_embeddings == TINY["max_len"] + 1
    with pytest.raises(ValueError, match="exceeds max_len"):
        model(_batch(torch.randint(2, 30, (1, 13)), [13]))


def test_config_roundtrip_and_validation() -> None:
    config = panther_config(30, CARDS, dilations=(1, 3), **TINY)
    assert PantherConfig.from_dict(config.to_dict()) == config
    import json

    assert PantherConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="profile_cardinalities"):
        PantherConfig(vocab_size=10, profile_mode="positional")
    with pytest.raises(ValueError, match="profile_mode"):
        PantherConfig(vocab_size=10, profile_mode="sideways")


def test_scaled_embeddings_change_the_block_input_and_old_configs_load_unscaled() -> None:
    plain = sasrec_config(30, **TINY)
    old = {k: v for k, v in plain.to_dict().items() if k != "scale_embeddings"}  # an artefact from before
    assert PantherConfig.from_dict(old).scale_embeddings is False
    torch.manual_seed(0)
    model = PantherModel(plain).eval()
    scaled = PantherModel(PantherConfig.from_dict({**plain.to_dict(), "scale_embeddings": True})).eval()
    scaled.load_state_dict(model.state_dict())
    batch = _batch(torch.tensor([[5, 6, 7]]), [3])
    seen = []
    hook = scaled.blocks[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    scaled(batch)
    hook.remove()
    tokens = model.token_embedding(batch.tokens) * TINY["d_model"] ** 0.5
    assert torch.allclose(seen[0], tokens + model.position_embedding(torch.arange(3)), atol=1e-6)


def test_factories() -> None:
    sas = sasrec_config(30)
    assert not sas.use_sprm and sas.profile_mode == "none" and sas.contrastive_weight == 0
    full = panther_config(30, CARDS)
    assert full.use_sprm and full.profile_mode == "positional" and full.contrastive_weight == 0.1
    assert panther_config(30).profile_mode == "none" and panther_config(30).contrastive_weight == 0
    ladder = ablation_configs(30, CARDS)
    assert list(ladder) == ["sprm_only", "profile_first_token", "profile_pe", "panther"]
    assert ladder["profile_pe"].contrastive_weight == 0 and ladder["panther"].contrastive_weight == 0.1
    assert ladder["profile_first_token"].profile_mode == "first_token"
    assert list(ablation_configs(30, CARDS, include_first_token=False)) == [
        "sprm_only",
        "profile_pe",
        "panther",
    ]
    assert list(ablation_configs(30, ())) == ["panther"]


def test_tiny_model_overfits_a_memorizable_pattern() -> None:
    """Each user repeats its own cycle; after training, next-token HR@1 on held-out steps is ~1."""
    torch.manual_seed(0)
    n_users, t = 8, 12
    starts = torch.arange(n_users) * 3
    tokens = 4 + (starts.unsqueeze(1) + torch.arange(t + 1)) % 24  # deterministic successor per token
    batch = SequenceBatch(
        tokens=tokens[:, :t],
        lengths=torch.full((n_users,), t),
        profile=torch.zeros(n_users, 2, dtype=torch.long),
        targets=tokens[:, 1:],
    )
    model = PantherModel(panther_config(30, CARDS, **TINY))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss_fn = FullSoftmaxLoss()
    first = None
    for _ in range(120):
        optimizer.zero_grad()
        loss = model.training_loss(batch, loss_fn).total
        first = loss.item() if first is None else first
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1 * first
    model.eval()
    with torch.no_grad():
        predicted = model.logits(model(batch)).argmax(-1)
    assert (predicted == batch.targets).float().mean() > 0.95
