"""SPRM — the Sequence Pattern Recognition Module of PANTHER (paper §3.3).

Two steps, both linear in the sequence length T:

1. **Local patterns**: depthwise dilated *causal* 1-D convolutions, one branch per dilation r
   (kernel w, left-padded by (w − 1)·r so position t only reads positions ≤ t). Branches run in
   parallel on the same input (receptive fields 3, 5, 9 for w = 3, r = 1, 2, 4) and are merged by
   concatenation → linear → GELU. Why this merge: depthwise convolutions never mix channels, so the
   merge is also the channel-mixing ("pointwise") half of a depthwise-separable convolution; a learned
   softmax over branches could only re-weight scales, not combine channels.
2. **Prototype matching**: multi-head cross-attention from the merged local features (queries) to m
   learnable prototypes (keys and values projected from one (m, d) table), projected back to d. Each
   position becomes a mixture of "typical local patterns": cost O(T·m), never O(T²).

Padding cannot leak into real positions: the batch is right-padded and the convolutions only look
back, and the prototype step is position-wise.

Memory (what makes SPRM cheaper than attention in training): the branches read ONE left-padded copy of
the input and compute each convolution as a shift-and-add over its w taps, channels-last — so autograd
keeps that single padded tensor for every branch, instead of one padded, transposed copy per branch
(`nn.Conv1d`'s layout); the weights stay in `nn.Conv1d` modules, so artefacts are unchanged.
`SPRMConfig.recompute` goes further: training keeps only SPRM's input and recomputes the module in the
backward pass (activation checkpointing — the same trade fused attention kernels make for their score
matrix). Peak memory then stays O(T·d) even during the recomputation, which is not true of attention.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.batch import take_positions


@dataclass(frozen=True)
class SPRMConfig:
    d_model: int
    n_prototypes: int = 64
    kernel: int = 3
    dilations: tuple[int, ...] = (1, 2, 4)
    n_heads: int = 1  # heads of the prototype cross-attention
    dropout: float = 0.0
    recompute: bool = False  # training: keep only the input, recompute SPRM in backward


class CausalDepthwiseConv(nn.Module):
    """One depthwise dilated causal convolution: (B, T, d) → (B, T, d); output t depends on inputs ≤ t.

    >>> conv = CausalDepthwiseConv(d_model=4, kernel=3, dilation=2)
    >>> conv(torch.zeros(2, 7, 4)).shape
    torch.Size([2, 7, 4])
    """

    def __init__(self, d_model: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.left_pad = (kernel - 1) * dilation
        self.conv = nn.Conv1d(d_model, d_model, kernel, dilation=dilation, groups=d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_padded(F.pad(x, (0, 0, self.left_pad, 0)), self.left_pad)

    def from_padded(self, padded: torch.Tensor, pad: int) -> torch.Tensor:
        """(B, pad + T, d) left-padded by `pad` ≥ `left_pad` → (B, T, d), as `nn.Conv1d` would compute it.

        Shift-and-add over the taps: output t = bias + Σ_j w_j · x[t − (w − 1 − j)·r]; the products read
        views of `padded`, so branches sharing it share what autograd saves.
        """
        t = padded.shape[1] - pad
        offset = pad - self.left_pad
        dilation = self.conv.dilation[0]
        # (w, d), each tap's weights contiguous: broadcasting a strided (d,) column kept the products
        # off torch's vectorized loop, 4x slower on CPU; the numbers are the same bit for bit
        weight = self.conv.weight[:, 0, :].t().contiguous()
        taps = [padded[:, offset + j * dilation : offset + j * dilation + t] for j in range(weight.shape[0])]
        y = torch.addcmul(self.conv.bias, taps[0], weight[0])  # one (B, T, d) result per branch…
        for j in range(1, len(taps)):
            y = y.addcmul_(taps[j], weight[j])  # …accumulated in place (autograd keeps only the views)
        return y


class PrototypeAttention(nn.Module):
    """Cross-attention from each position to m learnable prototypes: (B, T, d) → (B, T, d), cost O(T·m).

    >>> proto = PrototypeAttention(d_model=8, n_prototypes=4, n_heads=2)
    >>> proto(torch.zeros(2, 5, 8)).shape
    torch.Size([2, 5, 8])
    """

    def __init__(self, d_model: int, n_prototypes: int, n_heads: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by prototype heads={n_heads}")
        self.n_heads = n_heads
        self.dropout = dropout
        self.prototypes = nn.Parameter(torch.randn(n_prototypes, d_model) * 0.02)
        self.query = nn.Linear(d_model, d_model)
        self.key_value = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h, dh = self.n_heads, d // self.n_heads
        q = self.query(x).view(b, t, h, dh).transpose(1, 2)  # (B, h, T, dh)
        k, v = self.key_value(self.prototypes).view(-1, 2, h, dh).permute(1, 2, 0, 3)  # (h, m, dh) each
        y = F.scaled_dot_product_attention(
            q,
            k.expand(b, -1, -1, -1),
            v.expand(b, -1, -1, -1),
            dropout_p=self.dropout if self.training else 0.0,
        )  # (B, h, T, dh); no mask: every position may use every prototype
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class SPRM(nn.Module):
    """Local dilated causal convolutions → merge → prototype cross-attention: (B, T, d) → (B, T, d).

    >>> sprm = SPRM(SPRMConfig(d_model=8, n_prototypes=4, dilations=(1, 2)))
    >>> sprm(torch.zeros(2, 6, 8)).shape
    torch.Size([2, 6, 8])
    """

    def __init__(self, config: SPRMConfig) -> None:
        super().__init__()
        d = config.d_model
        self.branches = nn.ModuleList(CausalDepthwiseConv(d, config.kernel, r) for r in config.dilations)
        self.merge = nn.Linear(len(config.dilations) * d, d)
        self.prototypes = PrototypeAttention(d, config.n_prototypes, config.n_heads, config.dropout)
        self.recompute = config.recompute
        self._pad = max(branch.left_pad for branch in self.branches)

    def local_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d) → (B, T, d): the merged multi-scale local patterns (the prototype queries)."""
        return F.gelu(self.merge(self._branches(x)))

    def _branches(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d) → (B, T, r·d): every dilated branch's output, side by side (the merge's input)."""
        padded = F.pad(x, (0, 0, self._pad, 0))  # one copy shared by every branch
        return torch.cat([branch.from_padded(padded, self._pad) for branch in self.branches], dim=-1)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prototypes(self.local_features(x))

    def forward_at(self, x: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
        """`forward(x)` read only at positions `at` (B, K) → (B, K, d): the depthwise convolutions run
        over all T (they read earlier positions), the merge and the prototypes only at those K."""
        return self.prototypes(F.gelu(self.merge(take_positions(self._branches(x), at))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.recompute and self.training and torch.is_grad_enabled():
            return checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)
