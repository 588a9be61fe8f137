"""The frozen TorchScript read the refresh serves equals the eager model it was traced from, read at
the same positions."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models.batch import SequenceBatch
from models.fraud.encoder_pass import position_hidden
from models.fraud.traced import TracedEncoder, serving_encoder
from models.panther import PantherModel


def _batch(model: PantherModel, rows: int, width: int, seed: int) -> SequenceBatch:
    generator = torch.Generator().manual_seed(seed)
    config = model.config
    tokens = torch.randint(5, config.vocab_size, (rows, width), generator=generator)
    lengths = torch.randint(1, width + 1, (rows,), generator=generator)
    tokens[torch.arange(width) >= lengths[:, None]] = 0  # right padding, as the live rows
    cards = torch.tensor(config.profile_cardinalities)
    profile = (torch.rand((rows, len(cards)), generator=generator) * cards).long()
    return SequenceBatch(tokens=tokens, lengths=lengths, profile=profile)


@pytest.mark.parametrize("profile_mode", ["positional", "first_token", "none"])
def test_the_traced_forward_equals_the_eager_model_at_every_shape(tiny, profile_mode: str) -> None:
    config = dataclasses.replace(tiny.model.config, profile_mode=profile_mode)
    torch.manual_seed(1)
    model = PantherModel(config).eval()
    traced = TracedEncoder(model)
    with torch.no_grad():
        shapes = [(1, 1, 1), (3, config.max_len, 2), (17, 5, 1), (64, 9, 3)]  # rows, width, reads
        for seed, (rows, width, reads) in enumerate(shapes):
            batch = _batch(model, rows, width, seed)
            positions = torch.randint(0, width, (rows, reads), generator=torch.Generator().manual_seed(seed))
            positions[:, 0] = batch.lengths - 1
            full = model(batch)
            expected = full.gather(1, positions.unsqueeze(-1).expand(-1, -1, full.shape[-1]))
            torch.testing.assert_close(traced(batch, positions), expected, rtol=1e-5, atol=1e-6)


def test_position_hidden_is_the_same_through_either_path(tiny) -> None:
    model = tiny.model
    batch = _batch(model, 11, model.config.max_len, 7)
    positions = torch.stack([batch.lengths - 1, (batch.lengths - 2).clamp(min=-1)], dim=1)
    args = (batch.tokens, batch.lengths, batch.profile, positions)
    read = position_hidden(TracedEncoder(model), *args)
    torch.testing.assert_close(read, position_hidden(model.hidden_at, *args))
    full = model(SequenceBatch(tokens=batch.tokens, lengths=batch.lengths, profile=batch.profile))
    expected = full.gather(1, positions.clamp(min=0).unsqueeze(-1).expand(-1, -1, full.shape[-1]))
    expected[positions < 0] = 0.0  # no position: zeros
    torch.testing.assert_close(read, expected, rtol=1e-5, atol=1e-6)


def test_only_the_cpu_fp32_forward_without_a_time_bias_is_traced(tiny) -> None:
    model = tiny.model
    cpu = torch.device("cpu")
    assert isinstance(serving_encoder(model, cpu), TracedEncoder)
    assert serving_encoder(model, torch.device("cuda")) == model.hidden_at
    assert serving_encoder(model, cpu, precision="bf16") == model.hidden_at
    biased = PantherModel(dataclasses.replace(model.config, relative_bias="position_time")).eval()
    assert serving_encoder(biased, cpu) == biased.hidden_at
