"""Relative attention bias (positions, log time gaps): fused = naive, causal, times carried by batches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from models.batch import PAD_ID, SequenceBatch
from models.loaders import TrainBatches, UserFeatures, WindowSpec, eval_batches
from models.panther import PantherModel, panther_config, sasrec_config
from models.relative_bias import (
    N_TIME_BUCKETS,
    gather_small_table,
    gather_small_table_reference,
    relative_index,
)
from models.sequences import build_sequences, make_eval_set


def _batch(tokens: torch.Tensor, times: torch.Tensor, n_profile: int = 0) -> SequenceBatch:
    return SequenceBatch(
        tokens=tokens,
        lengths=torch.full((tokens.shape[0],), tokens.shape[1]),
        profile=torch.ones(tokens.shape[0], n_profile, dtype=torch.long),
        times=times,
    )


def _randomized(model: PantherModel) -> PantherModel:
    """Non-zero bias tables (they start at zero, which would hide a wrong gather)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "relative_bias" in name:
                param.normal_(0, 1)
    return model.eval()


@pytest.mark.parametrize("bias", ["position", "position_time"])
@pytest.mark.parametrize("use_sprm", [False, True])
def test_fused_attention_with_bias_equals_naive_reference(bias: str, use_sprm: bool) -> None:
    kw = {"d_model": 16, "n_layers": 2, "n_heads": 2, "max_len": 12, "relative_bias": bias}
    kw |= {"use_sprm": use_sprm, "n_prototypes": 4}
    fused = _randomized(PantherModel(sasrec_config(40, **kw)))
    naive = PantherModel(sasrec_config(40, **kw, attention_impl="naive")).eval()
    naive.load_state_dict(fused.state_dict())
    tokens = torch.randint(4, 40, (3, 12))
    times = torch.cumsum(torch.randint(0, 10**7, (3, 12)), dim=1)
    batch = _batch(tokens, times)
    torch.testing.assert_close(fused(batch), naive(batch), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("profile_mode", ["none", "positional", "first_token"])
def test_biased_model_stays_causal_in_tokens_and_times(profile_mode: str) -> None:
    model = _randomized(
        PantherModel(
            panther_config(
                40, [3], d_model=16, n_layers=2, n_heads=2, max_len=10, n_prototypes=4,
                relative_bias="position_time", profile_mode=profile_mode, contrastive_weight=0.0,
            )
        )
    )  # fmt: skip
    tokens = torch.randint(4, 40, (2, 10))
    times = torch.cumsum(torch.randint(0, 10**6, (2, 10)), dim=1)
    base = model(_batch(tokens, times, n_profile=1))
    later_tokens, later_times = tokens.clone(), times.clone()
    later_tokens[:, 6:] = 5
    later_times[:, 6:] += 10**9
    changed = model(_batch(later_tokens, later_times, n_profile=1))
    torch.testing.assert_close(base[:, :6], changed[:, :6])
    assert not torch.allclose(base[:, 6:], changed[:, 6:])
    earlier_times = times.clone()
    earlier_times[:, :3] -= 10**8  # a longer gap to the first events changes what comes after them
    assert not torch.allclose(model(_batch(tokens, earlier_times, n_profile=1))[:, 5], base[:, 5])


def test_time_bias_without_times_is_a_clear_error() -> None:
    model = PantherModel(
        sasrec_config(20, d_model=8, n_layers=1, n_heads=1, max_len=5, relative_bias="position_time")
    )
    batch = SequenceBatch(tokens=torch.tensor([[4, 5]]), lengths=torch.tensor([2]), profile=torch.zeros(1, 0))
    with pytest.raises(ValueError, match=r"needs batch\.times"):
        model(batch)
    position_only = PantherModel(
        sasrec_config(20, d_model=8, n_layers=1, n_heads=1, max_len=5, relative_bias="position")
    )
    assert position_only(batch).shape == (1, 2, 8)  # positions need no times


def test_unknown_relative_bias_is_rejected() -> None:
    with pytest.raises(ValueError, match="relative_bias must be one of"):
        sasrec_config(20, relative_bias="alibi")


def test_time_buckets_are_log_spaced_in_seconds_and_capped() -> None:
    second, day, century = 1_000, 86_400_000, 100 * 365 * 86_400_000
    times = torch.tensor([[0, 500, second, day, century]])
    buckets = relative_index(times, 5, use_time=True).time_buckets[0]
    assert buckets[1, 0] == 0 and buckets[2, 0] == 0  # under a second and one second: bucket 0
    assert buckets[3, 0] == int(np.log(86_400) / 0.301)  # one day: bucket 37
    assert buckets[4, 0] <= N_TIME_BUCKETS and buckets.min() >= 0


def _seqs() -> tuple:
    rows = [
        (user, 1_000 * (7 * pos + k), 100 * (k + 1) + pos) for k, user in enumerate("ab") for pos in range(9)
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "timestamp", "token"])
    return build_sequences(frame, frame["token"].to_numpy()), frame


def test_training_and_evaluation_batches_carry_each_positions_time() -> None:
    seqs, _ = _seqs()
    loader = TrainBatches(seqs, UserFeatures.empty(2), WindowSpec(max_len=4, batch_size=2, mode="all"))
    batches = list(loader.epoch(0)) + [
        b for b, _ in eval_batches(make_eval_set(seqs, max_len=4), UserFeatures.empty(2), 4)
    ]
    for batch in batches:
        real = batch.tokens != PAD_ID
        k = batch.tokens // 100 - 1  # the user, from the token
        pos = batch.tokens % 100
        assert torch.equal(batch.times[real], (1_000 * (7 * pos + k))[real])
        assert (batch.times[~real] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(7, 7), (3, 9, 9)])
def test_small_table_gather_equals_plain_indexing_values_and_gradients(dtype, shape) -> None:
    """The histogram backward (fast on CUDA) = autograd's indexing backward, on fresh random inputs."""
    gen = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
    table = torch.randn(N_TIME_BUCKETS + 1, dtype=dtype, generator=gen)
    index = torch.randint(0, N_TIME_BUCKETS + 1, shape, generator=gen)
    upstream = torch.randn(shape, dtype=dtype, generator=gen)
    grads = []
    for gather in (gather_small_table, gather_small_table_reference):
        leaf = table.clone().requires_grad_(True)
        out = gather(leaf, index)
        (out * upstream).sum().backward()
        grads.append((out.detach(), leaf.grad))
    (fast_out, fast_grad), (ref_out, ref_grad) = grads
    assert torch.equal(fast_out, ref_out)
    assert fast_grad.dtype == dtype
    torch.testing.assert_close(fast_grad, ref_grad)


def test_small_table_gather_passes_gradcheck() -> None:
    table = torch.randn(5, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 5, (4, 6))
    assert torch.autograd.gradcheck(lambda t: gather_small_table(t, index), (table,))
