"""Multi-head causal self-attention, with a fused kernel and a naive reference behind one switch.

Why no key-padding mask: batches are RIGHT-padded (`models.batch`), so under a causal mask a real query
at position t only sees keys ≤ t, which are all real. Padded queries see real keys plus earlier padding,
never an empty row (position 0 is always real), so nothing becomes NaN. The causal mask alone is
therefore exact for every real position, and it lets PyTorch pick its flash / memory-efficient kernel.

`attention_impl="sdpa"` uses `torch.nn.functional.scaled_dot_product_attention(is_causal=True)`;
`"naive"` materializes the (T, T) score matrix the way a textbook Transformer does — it is the reference
the fused path is tested against and the "Transformer" of the paper's memory table (App. B.4).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from models.batch import take_positions

AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float, torch.Tensor | None], torch.Tensor]


def sdpa_causal(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """(B, h, T, dh) ×3 → (B, h, T, dh) via PyTorch's fused kernels (no (T, T) tensor on flash paths).

    `bias` (B | 1, 1, T, T), already −inf above the diagonal (`models.relative_bias`), is added to the
    scores; with it PyTorch falls back from flash to its memory-efficient or math kernel.
    """
    if bias is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=dropout_p)


def naive_causal(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """(B, h, T, dh) ×3 → (B, h, T, dh), materializing the (B, h, T, T) scores: the O(T²) reference."""
    t = q.shape[-2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + bias
    future = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
    probs = scores.masked_fill(future, float("-inf")).softmax(dim=-1)
    probs = F.dropout(probs, p=dropout_p, training=dropout_p > 0)
    return probs @ v


ATTENTION_IMPLS: dict[str, AttentionFn] = {"sdpa": sdpa_causal, "naive": naive_causal}


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: (B, T, d) → (B, T, d).

    >>> attn = CausalSelfAttention(d_model=8, n_heads=2)
    >>> attn(torch.zeros(3, 5, 8)).shape
    torch.Size([3, 5, 8])
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, impl: str = "sdpa") -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        if impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention_impl must be one of {sorted(ATTENTION_IMPLS)}, got {impl!r}")
        self.n_heads = n_heads
        self.dropout = dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self._attend = ATTENTION_IMPLS[impl]

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, d), optional additive causal `bias` (B | 1, 1, T, T) → (B, T, d)."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        y = self._attend(q, k, v, self.dropout if self.training else 0.0, bias)
        return self.out(y.transpose(1, 2).reshape(b, t, d))

    def forward_at(self, x: torch.Tensor, at: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """`forward(x, bias)` read only at positions `at` (B, K) → (B, K, d), computing queries and
        outputs for those K positions alone (keys and values for all T): what a serving call needs
        when it reads one state per window. Inference only (no dropout)."""
        b, t, d = x.shape
        k_rows, dh = at.shape[1], d // self.n_heads
        weight, b_qkv = self.qkv.weight, self.qkv.bias
        q = F.linear(take_positions(x, at), weight[:d], b_qkv[:d])  # (B, K, d): the K positions' queries
        q = q.view(b, k_rows, self.n_heads, dh).transpose(1, 2)
        k, v = F.linear(x, weight[d:], b_qkv[d:]).view(b, t, 2, self.n_heads, dh).permute(2, 0, 3, 1, 4)
        if bias is None:  # key j is visible from position p when j ≤ p
            keys = torch.arange(t, device=x.device)
            mask = (keys.view(1, 1, t) <= at.unsqueeze(-1)).unsqueeze(1)  # (B, 1, K, T) bool
        else:  # the bias rows of those positions, already −inf above the diagonal
            rows = at.view(b, 1, k_rows, 1).expand(b, 1, k_rows, t)
            mask = bias.expand(b, 1, t, t).gather(2, rows).to(q.dtype)  # (B, 1, K, T)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, K, dh)
        return self.out(y.transpose(1, 2).reshape(b, k_rows, d))
