"""One PANTHER transformer block: causal self-attention ∥ SPRM on the same input, then a feed-forward.

    h = LN₁(x)
    x = x + Dropout(Attention(h)) + Dropout(SPRM(h))      # parallel branches, outputs added (paper §3.3)
    x = x + Dropout(FFN(LN₂(x)))                           # FFN = Linear → GELU → Linear

Pre-LayerNorm (stable without warm-up at lr 1e-3). `relative_bias` adds a learned bias over relative
positions [and log time gaps] to the attention scores (`models.relative_bias`); SPRM does not use it.
`use_sprm=False` gives a SASRec block; `use_attention=False` gives the SPRM-only block of the memory
benchmark. The disabled branch is simply absent (no parameters, no compute).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.attention import CausalSelfAttention
from models.batch import take_positions
from models.relative_bias import RelativeAttentionBias, RelativeIndex
from models.sprm import SPRM, SPRMConfig


@dataclass(frozen=True)
class BlockConfig:
    d_model: int
    n_heads: int
    dropout: float = 0.1
    ffn_mult: int = 4
    use_attention: bool = True
    use_sprm: bool = True
    attention_impl: str = "sdpa"
    sprm: SPRMConfig | None = None  # required when use_sprm
    relative_bias: str = "none"  # "none" | "position" | "position_time" (models.relative_bias)
    max_len: int = 0  # positions the relative bias covers (needed when relative_bias != "none")


class PantherBlock(nn.Module):
    """(B, T, d) → (B, T, d); causal: output t depends only on inputs ≤ t.

    >>> block = PantherBlock(BlockConfig(d_model=8, n_heads=2, sprm=SPRMConfig(d_model=8, n_prototypes=4)))
    >>> block(torch.zeros(2, 5, 8)).shape
    torch.Size([2, 5, 8])
    """

    def __init__(self, config: BlockConfig) -> None:
        super().__init__()
        if not (config.use_attention or config.use_sprm):
            raise ValueError("a block needs attention, SPRM or both")
        d = config.d_model
        self.norm_mix = nn.LayerNorm(d)
        self.attention = (
            CausalSelfAttention(d, config.n_heads, config.dropout, config.attention_impl)
            if config.use_attention
            else None
        )
        self.relative_bias = (
            RelativeAttentionBias(config.max_len, config.relative_bias == "position_time")
            if config.use_attention and config.relative_bias != "none"
            else None
        )
        self.sprm = SPRM(config.sprm or SPRMConfig(d_model=d)) if config.use_sprm else None
        self.norm_ffn = nn.LayerNorm(d)
        self.ffn = nn.Sequential(
            nn.Linear(d, config.ffn_mult * d),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.ffn_mult * d, d),
        )
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, index: RelativeIndex | None = None) -> torch.Tensor:
        """x (B, T, d), the shared relative indices when this block has a relative bias → (B, T, d)."""
        h = self.norm_mix(x)
        branches = []
        if self.attention is not None:
            branches.append(self.attention(h, self._bias(index)))
        if self.sprm is not None:
            branches.append(self.sprm(h))
        x = x + self.drop(sum(branches[1:], branches[0]))
        return x + self.drop(self.ffn(self.norm_ffn(x)))

    def forward_at(
        self, x: torch.Tensor, at: torch.Tensor, index: RelativeIndex | None = None
    ) -> torch.Tensor:
        """`forward(x, index)` read only at positions `at` (B, K) → (B, K, d). Only what those positions
        need runs over all T (the normalized input the keys, values and convolutions read); queries,
        the branch outputs and the feed-forward run for K positions. Inference only (no dropout)."""
        h = self.norm_mix(x)
        picked = take_positions(x, at)  # (B, K, d)
        if self.attention is not None:
            picked = picked + self.attention.forward_at(h, at, self._bias(index))
        if self.sprm is not None:
            picked = picked + self.sprm.forward_at(h, at)
        return picked + self.ffn(self.norm_ffn(picked))

    def _bias(self, index: RelativeIndex | None) -> torch.Tensor | None:
        """The attention's additive relative bias (B | 1, 1, T, T), or None without one."""
        if self.relative_bias is None:
            return None
        assert index is not None, "a block with a relative bias needs the RelativeIndex"
        return self.relative_bias(index)
