"""The one typed batch passed between data pipeline, tokenizer output, models, scorer and Triton.

Sequences are RIGHT-padded with PAD (id 0); `lengths` says how many leading positions are real.
Shapes: B = batch, T = window length, P = profile fields, D = demographic columns.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from models.ids import PAD_ID, UNK_ID

__all__ = ["PAD_ID", "UNK_ID", "SequenceBatch", "take_positions"]


def take_positions(x: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
    """x (B, T, C), at (B, K) positions → (B, K, C): row b's positions at[b].

    >>> take_positions(torch.arange(12.0).view(2, 3, 2), torch.tensor([[2], [0]])).tolist()
    [[[4.0, 5.0]], [[6.0, 7.0]]]
    """
    return x.gather(1, at.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


@dataclass(frozen=True)
class SequenceBatch:
    tokens: torch.Tensor  # (B, T) int64 — token ids, right-padded with PAD_ID
    lengths: torch.Tensor  # (B,) int64 — real positions per row, 1 ≤ length ≤ T
    profile: torch.Tensor  # (B, P) int64 — categorical profile feature ids (0 = missing per field)
    targets: torch.Tensor | None = None  # (B, T) int64 — next token per position, PAD_ID where none
    demographics: torch.Tensor | None = None  # (B, D) float32 — raw demographics (contrastive positives)
    user_index: torch.Tensor | None = None  # (B,) int64 — row id of the user in its dataset (bookkeeping)
    times: torch.Tensor | None = None  # (B, T) int64 — epoch ms of each input position (time-gap bias)

    @property
    def padding_mask(self) -> torch.Tensor:
        """(B, T) bool — True at real positions."""
        positions = torch.arange(self.tokens.shape[1], device=self.tokens.device)
        return positions.unsqueeze(0) < self.lengths.unsqueeze(1)

    def to(self, device: torch.device | str) -> SequenceBatch:
        moved = {
            f.name: (value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value)
            for f in fields(self)
            if (value := getattr(self, f.name)) is not None
        }
        return replace(self, **moved)
