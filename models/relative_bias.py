"""Relative attention bias over positions and log-bucketed time gaps (the HSTU form, arXiv 2402.17152).

A learned scalar is added to every attention score (query i, key j ≤ i), shared by the heads of a layer:

    bias[b, i, j] = w_pos[i − j] + w_time[bucket(t[b, i] − t[b, j])]
    bucket(gap)  = ⌊ln(max(gap_s, 1)) / 0.301⌋, clamped to n_time_buckets   (gap in seconds)

Why: absolute position embeddings make "three ratings ago" and "an hour ago" something each position
must relearn; a relative bias states them once. The time term lets a burst of events a few seconds apart
attend to each other differently from events weeks apart — the signal a payment sequence carries in its
timing. Differences from the reference: the query's time is its own event's time (HSTU uses the next
event's, i.e. the target's timestamp), so nothing about the target leaks into the score.

Each block owns its tables; the (T, T) relative positions and the (B, T, T) time buckets are computed
once per forward (`RelativeIndex`) and shared by every block.

Speed: the tables are gathered through `gather_small_table`, whose backward is a weighted histogram
(`torch.bincount`). Plain indexing (`table[index]`) is the same function, but its CUDA backward sorts the
5 M indices of a (128, 200, 200) batch and walks each of the 129 buckets' ~40,000 duplicates serially:
measured on an H200, 1,228 ms per SASRec step with the time bias against 19 ms without (docs/BENCHMARKS.md).
Plain indexing stays as the reference (`gather_small_table_reference`) and the tests hold them equal.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import nn

RELATIVE_BIASES = ("none", "position", "position_time")
N_TIME_BUCKETS = 128
_LOG_BUCKET = 0.301  # ≈ log10(2) in natural-log units, the reference's constant


class _SmallTableGather(torch.autograd.Function):
    """table (n,) gathered at index (any shape) → (index.shape); backward: bincount of the gradient."""

    @staticmethod
    def forward(ctx: Any, table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.n = table.shape[0]
        return table[index]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (index,) = ctx.saved_tensors
        flat = grad.reshape(-1)
        weights = flat.float() if flat.dtype != torch.float64 else flat
        summed = torch.bincount(index.reshape(-1), weights=weights, minlength=ctx.n)
        return summed.to(grad.dtype), None


def gather_small_table(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`table[index]` for a 1-d table of a few hundred entries and an index with millions of duplicates.

    >>> gather_small_table(torch.tensor([1.0, 2.0]), torch.tensor([[1, 0], [1, 1]])).tolist()
    [[2.0, 1.0], [2.0, 2.0]]
    """
    return _SmallTableGather.apply(table, index)


def gather_small_table_reference(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The same function through plain indexing (autograd's own backward): what the fast path must equal."""
    return table[index]


class RelativeIndex(NamedTuple):
    """What every block's bias gathers from: positions (T, T) int64, time buckets (B, T, T) int64 | None."""

    positions: torch.Tensor
    time_buckets: torch.Tensor | None


def relative_index(
    times_ms: torch.Tensor | None, width: int, use_time: bool, device: torch.device | str | None = None
) -> RelativeIndex:
    """(B, T) epoch-ms times (or None) → the shared indices; `i − j` clamped at 0 above the diagonal.

    >>> idx = relative_index(torch.tensor([[0, 1_000, 60_000]]), 3, use_time=True)
    >>> idx.positions.tolist(), idx.time_buckets[0, 2].tolist()
    ([[0, 0, 0], [1, 0, 0], [2, 1, 0]], [13, 13, 0])
    """
    rows = torch.arange(width, device=device if device is not None or times_ms is None else times_ms.device)
    positions = (rows[:, None] - rows[None, :]).clamp(min=0)
    if not use_time:
        return RelativeIndex(positions, None)
    if times_ms is None:
        raise ValueError("relative_bias='position_time' needs batch.times (epoch ms per position)")
    gap_s = (times_ms[:, :, None] - times_ms[:, None, :]).div(1000, rounding_mode="floor").clamp(min=1)
    buckets = (gap_s.double().log() / _LOG_BUCKET).long().clamp(max=N_TIME_BUCKETS)
    return RelativeIndex(positions, buckets)


class RelativeAttentionBias(nn.Module):
    """RelativeIndex → additive causal scores (B or 1, 1, T, T) float: the bias, −inf above the diagonal.

    >>> bias = RelativeAttentionBias(max_len=4, use_time=False)
    >>> bias(relative_index(None, 3, use_time=False)).shape
    torch.Size([1, 1, 3, 3])
    """

    def __init__(self, max_len: int, use_time: bool) -> None:
        super().__init__()
        self.position = nn.Parameter(torch.zeros(max_len))
        self.time = nn.Parameter(torch.zeros(N_TIME_BUCKETS + 1)) if use_time else None

    def forward(self, index: RelativeIndex) -> torch.Tensor:
        positions = index.positions.clamp(max=self.position.shape[0] - 1)
        bias = gather_small_table(self.position, positions).unsqueeze(0)  # (1, T, T)
        if self.time is not None:
            assert index.time_buckets is not None, "built with use_time: needs time buckets"
            bias = bias + gather_small_table(self.time, index.time_buckets)  # (B, T, T)
        t = positions.shape[0]
        future = torch.ones(t, t, dtype=torch.bool, device=bias.device).triu(1)
        return bias.masked_fill(future, -math.inf).unsqueeze(1)
