"""The head in numpy equals the torch head it was copied from, for every head variant and an ensemble."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.fraud.deviation import DeviationConfig
from models.fraud.deviation import deviation_features as torch_deviation
from models.fraud.ensemble import HeadEnsemble
from models.fraud.head import NORMALIZERS, FraudHead, HeadInputs, head_config
from models.fraud.numpy_head import NumpyHead, deviation_features
from models.fraud.scorer import sigmoid

F, D, B = 12, 8, 9
CASES = {
    "dcn": ("dcn", {}),
    "hybrid_panther": ("hybrid_panther", {}),
    "hybrid_panther_ple_low_rank": ("hybrid_panther", {"numeric_encoding": "ple", "cross_rank": 3}),
    "hybrid_textcnn": ("hybrid_textcnn", {"vocab_size": 30}),
    "no_user_no_deviation": ("hybrid_panther", {"use_user": False, "use_deviation": False}),
}


def _randomized(head: FraudHead, seed: int) -> FraudHead:
    """Random weights and standardization (a fresh head's are zeros and ones: too easy to match)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in head.state_dict(keep_vars=True).items():
            if tensor.is_floating_point() and "floor" not in name and "ceiling" not in name:
                fan_in = tensor.shape[-1] if tensor.dim() == 2 else 4
                tensor.copy_(torch.randn(tensor.shape, generator=g) / fan_in**0.5)
        for name in NORMALIZERS:
            module = getattr(head, name)
            if module is not None and hasattr(module, "std"):
                module.std.copy_(module.std.abs() + 0.1)
        if head.ple is not None:
            head.ple.width.copy_(head.ple.width.abs() + 0.05)
    return head.eval()


def _inputs(seed: int) -> tuple[HeadInputs, dict[str, np.ndarray]]:
    g = torch.Generator().manual_seed(seed)
    x = {"features": torch.randn(B, F, generator=g) * 3, "hidden": torch.randn(B, D, generator=g),
         "user": torch.randn(B, D, generator=g), "deviation": torch.randn(B, 5, generator=g),
         "sequence": torch.randn(B, 3 * 32, generator=g)}  # fmt: skip
    return HeadInputs(**x), {k: v.numpy() for k, v in x.items()}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("members", [1, 3])
def test_numpy_blocks_and_logits_equal_the_torch_head(case: str, members: int) -> None:
    variant, kw = CASES[case]
    config = head_config(variant, F, d_model=D, deep_dims=(16, 8), **kw)
    if members > 1 and config.sequence == "textcnn":
        pytest.skip("a TextCNN head is not an ensemble member")
    heads = [_randomized(FraudHead(config), seed) for seed in range(members)]
    for other in heads[1:]:
        other.copy_normalization(heads[0])
    head = heads[0] if members == 1 else HeadEnsemble(heads).eval()
    inputs, arrays = _inputs(7)
    if config.sequence == "textcnn":  # the cached path hands the head its window's encoding
        windows = torch.randint(1, 30, (B, 6), generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            inputs = HeadInputs(inputs.features, user=inputs.user, deviation=inputs.deviation,
                                sequence=heads[0].encode_sequence(windows, torch.full((B,), 6)))
        arrays["sequence"] = inputs.sequence.numpy()
    fast = NumpyHead(head)
    with torch.no_grad():
        blocks = head.blocks(inputs)
        want = head.fuse(blocks).numpy()
    got_blocks = fast.blocks(arrays["features"], arrays["hidden"], arrays["user"], arrays["deviation"],
                             arrays["sequence"])  # fmt: skip
    assert list(got_blocks) == list(blocks)
    for name, value in blocks.items():
        np.testing.assert_allclose(got_blocks[name], value.numpy(), rtol=1e-6, atol=1e-6, err_msg=name)
    got = fast.logit(got_blocks)
    assert got.dtype == np.float32 and got.shape == (B,)
    scale = float(np.abs(want).max())  # random heads of 3 cross layers reach large logits: float32 rounding
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * max(scale, 1.0))
    assert scale > 0.1  # the random head says something


def test_numpy_deviation_equals_torch_at_the_edges() -> None:
    config = DeviationConfig()
    rng = np.random.default_rng(0)
    logp = np.log(rng.uniform(1e-9, 1.0, 64)).astype(np.float32)
    stats = np.column_stack([rng.integers(0, 10, 64), rng.uniform(0, 1, 64), rng.uniform(0, 0.02, 64),
                             rng.normal(-3, 2, 64), rng.uniform(0, 0.3, 64)])  # fmt: skip
    stats[:4, 2] = 0.0  # σ = 0: the floors
    stats[4:8, 0] = config.min_history  # exactly warm
    want = torch_deviation(torch.from_numpy(logp), torch.from_numpy(stats), config).numpy()
    got = deviation_features(logp, stats, config)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert (np.abs(got[:, :2]) == config.clip).any()  # the clip was reached


def test_sigmoid_is_torch_s_without_overflow() -> None:
    x = np.array([-1e4, -90.0, -3.5, 0.0, 2.0, 88.0, 1e4], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        got = sigmoid(x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, torch.sigmoid(torch.from_numpy(x)).numpy(), rtol=1e-6, atol=1e-30)
