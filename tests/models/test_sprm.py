"""SPRM and the block: causality, padding, linear cost, reference vs fused attention."""

from __future__ import annotations

import doctest

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import models.attention
import models.block
import models.sprm
from models.attention import CausalSelfAttention
from models.block import BlockConfig, PantherBlock
from models.sprm import SPRM, CausalDepthwiseConv, PrototypeAttention, SPRMConfig


@pytest.mark.parametrize("module", [models.sprm, models.attention, models.block])
def test_doctests(module) -> None:
    assert doctest.testmod(module).failed == 0


def _flops(module: torch.nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops()


@pytest.mark.parametrize("dilation", [1, 2, 4])
def test_causal_conv_only_looks_back(dilation: int) -> None:
    torch.manual_seed(0)
    conv = CausalDepthwiseConv(d_model=4, kernel=3, dilation=dilation)
    x = torch.randn(2, 12, 4)
    y = conv(x)
    for t in range(11):
        x2 = x.clone()
        x2[:, t + 1 :] = torch.randn_like(x2[:, t + 1 :])
        torch.testing.assert_close(conv(x2)[:, : t + 1], y[:, : t + 1])
    # and it does look back exactly (k − 1)·r steps: input t − 2r changes output t
    x3 = x.clone()
    x3[:, 0] += 1.0
    assert not torch.allclose(conv(x3)[:, 2 * dilation], y[:, 2 * dilation])
    torch.testing.assert_close(conv(x3)[:, 2 * dilation + 1 :], y[:, 2 * dilation + 1 :])


def test_sprm_causal_and_padding_free() -> None:
    torch.manual_seed(0)
    sprm = SPRM(SPRMConfig(d_model=8, n_prototypes=5, dilations=(1, 2, 4), n_heads=2)).eval()
    x = torch.randn(3, 10, 8)
    y = sprm(x)
    x2 = x.clone()
    x2[:, 6:] = 100 * torch.randn_like(x2[:, 6:])  # "padding" content after position 5
    torch.testing.assert_close(sprm(x2)[:, :6], y[:, :6])


def test_sprm_cost_is_linear_in_length() -> None:
    sprm = SPRM(SPRMConfig(d_model=8, n_prototypes=16))
    f1, f2, f4 = (_flops(sprm, torch.randn(1, t, 8)) for t in (64, 128, 256))
    assert f4 - f2 == 2 * (f2 - f1)  # affine in T: per-position work + the T-independent prototype projection
    attention = CausalSelfAttention(8, 2, impl="naive")
    a1, a2 = _flops(attention, torch.randn(1, 64, 8)), _flops(attention, torch.randn(1, 128, 8))
    assert a2 > 2.5 * a1  # the quadratic part shows


def test_prototype_attention_is_positionwise() -> None:
    torch.manual_seed(0)
    proto = PrototypeAttention(d_model=8, n_prototypes=4, n_heads=2).eval()
    x = torch.randn(2, 7, 8)
    y = proto(x)
    perm = torch.randperm(7)
    torch.testing.assert_close(proto(x[:, perm]), y[:, perm])


def test_naive_and_sdpa_attention_agree() -> None:
    torch.manual_seed(0)
    fast = CausalSelfAttention(16, 4, impl="sdpa").eval()
    slow = CausalSelfAttention(16, 4, impl="naive").eval()
    slow.load_state_dict(fast.state_dict())
    x = torch.randn(3, 9, 16)
    torch.testing.assert_close(fast(x), slow(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("use_attention", "use_sprm"), [(True, True), (True, False), (False, True)])
def test_block_causal(use_attention: bool, use_sprm: bool) -> None:
    torch.manual_seed(0)
    config = BlockConfig(
        d_model=8,
        n_heads=2,
        use_attention=use_attention,
        use_sprm=use_sprm,
        sprm=SPRMConfig(d_model=8, n_prototypes=4),
    )
    block = PantherBlock(config).eval()
    x = torch.randn(2, 9, 8)
    y = block(x)
    x2 = x.clone()
    x2[:, 5] += 3.0
    out = block(x2)
    torch.testing.assert_close(out[:, :5], y[:, :5])
    assert not torch.allclose(out[:, 5], y[:, 5])
    assert (block.attention is None) != use_attention and (block.sprm is None) != use_sprm


def test_block_needs_a_branch() -> None:
    with pytest.raises(ValueError, match="attention, SPRM or both"):
        PantherBlock(BlockConfig(d_model=8, n_heads=2, use_attention=False, use_sprm=False))


@pytest.mark.parametrize("dilation", [1, 2, 4])
def test_shift_and_add_equals_the_conv1d_it_replaces(dilation: int) -> None:
    torch.manual_seed(0)
    conv = CausalDepthwiseConv(d_model=6, kernel=3, dilation=dilation)
    x = torch.randn(2, 11, 6, requires_grad=True)
    reference = conv.conv(torch.nn.functional.pad(x.transpose(1, 2), (conv.left_pad, 0))).transpose(1, 2)
    torch.testing.assert_close(conv(x), reference)
    grads = []  # and the same gradients (the taps are accumulated in place)
    for y in (reference, conv(x)):
        x.grad, conv.conv.weight.grad, conv.conv.bias.grad = None, None, None
        (y * torch.arange(y.numel()).view_as(y).sin()).sum().backward()
        grads.append([g.clone() for g in (x.grad, conv.conv.weight.grad, conv.conv.bias.grad)])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)
    extra = 5  # a wider shared pad (the SPRM pads once for its largest dilation)
    wide = torch.nn.functional.pad(x, (0, 0, conv.left_pad + extra, 0))
    torch.testing.assert_close(conv.from_padded(wide, conv.left_pad + extra), reference)


def test_recompute_gives_the_same_outputs_and_gradients() -> None:
    torch.manual_seed(0)
    plain = SPRM(SPRMConfig(d_model=8, n_prototypes=5, n_heads=2))
    again = SPRM(SPRMConfig(d_model=8, n_prototypes=5, n_heads=2, recompute=True))
    again.load_state_dict(plain.state_dict())
    x = torch.randn(3, 10, 8, requires_grad=True)
    outputs, grads = [], []
    for module in (plain, again):
        y = module(x)
        (y**2).sum().backward()
        outputs.append(y.detach())
        grads.append([x.grad.clone()] + [p.grad.clone() for p in module.parameters()])
        x.grad = None
    torch.testing.assert_close(outputs[0], outputs[1])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)
