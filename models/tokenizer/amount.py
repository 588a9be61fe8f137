"""Amount buckets: a streaming histogram of log-amounts on a fixed grid of "nice" numbers.

Why a fixed grid: counting each chunk into ~1,100 log-spaced bins is exact, bounded in memory and
independent of chunk order, and quantile edges read off the histogram are round numbers
(2 significant digits: 0.12, 50, 1.1k), so token names stay human-readable (`online|$50-100|…`).
Quantiles are invariant under the monotone log transform, so edges chosen on this log-spaced grid are
the log-quantile edges up to the grid's resolution (≤ 10% relative).
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd

_DECADES = range(-2, 10)  # 0.01 … 9.9e9


def _make_grid() -> np.ndarray:
    values = [float(f"{m / 10:.1f}e{e}") for e in _DECADES for m in range(10, 100)]
    return np.asarray(values, dtype=np.float64)


GRID = _make_grid()  # (G,) float64 ascending: 0.01, 0.011, …, 9.9e9
N_FINE = len(GRID) + 1  # fine bin b ≥ 1 holds [GRID[b-1], GRID[b]); bin 0 holds [0, 0.01)
FINE_MISSING = N_FINE  # code of a missing / negative / non-finite amount


def as_amounts(frame: pd.DataFrame, column: str) -> np.ndarray:
    """(N,) float64 amounts; NaN where absent, non-numeric, negative or infinite."""
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(np.isfinite(values) & (values >= 0), values, np.nan)


def fine_bins(amounts: np.ndarray) -> np.ndarray:
    """(N,) float64 → (N,) int64 fine bin codes in [0, N_FINE]; FINE_MISSING for NaN."""
    bins = np.searchsorted(GRID, np.nan_to_num(amounts, nan=0.0), side="right").astype(np.int64)
    return np.where(np.isnan(amounts), FINE_MISSING, bins)


def quantile_edges(histogram: np.ndarray, buckets: int) -> np.ndarray:
    """Fine-bin histogram (N_FINE + 1,) → ascending bucket edges (≤ buckets − 1,) on GRID values.

    Each interior quantile i/buckets picks the grid boundary whose cumulative count is nearest;
    boundaries with all mass on one side and duplicates are dropped (point masses → fewer buckets).

    >>> h = np.zeros(N_FINE + 1, dtype=np.int64); h[fine_bins(np.array([1.0, 1.0, 60.0, 70.0]))] += 1
    >>> quantile_edges(h, 2).tolist()
    [1.1]
    """
    counts = np.asarray(histogram[:N_FINE], dtype=np.int64)
    total = int(counts.sum())
    if total == 0 or buckets <= 1:
        return np.zeros(0, dtype=np.float64)
    below = np.cumsum(counts)[:-1]  # (G,): below[k] = count of amounts < GRID[k]
    chosen: list[int] = []
    for i in range(1, buckets):
        k = int(np.argmin(np.abs(below - total * i / buckets)))
        if 0 < below[k] < total and (not chosen or k > chosen[-1]):
            chosen.append(k)
    return GRID[np.asarray(chosen, dtype=np.int64)]


def format_amount(value: float) -> str:
    """50.0 → '50', 0.12 → '0.12', 1100.0 → '1.1k', 2.5e6 → '2.5M'.

    >>> [format_amount(v) for v in (50.0, 0.12, 1100.0, 2.5e6)]
    ['50', '0.12', '1.1k', '2.5M']
    """
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{round(value / scale, 6):g}{suffix}"
    return f"{value:g}"


def bucket_labels(edges: np.ndarray, symbol: str = "$") -> list[str]:
    """Edges (E,) → E + 1 labels: '$<e1', '$e1-e2', …, '$≥eE' ('$any' when E = 0).

    >>> bucket_labels(np.array([50.0, 100.0]))
    ['$<50', '$50-100', '$≥100']
    """
    if len(edges) == 0:
        return [f"{symbol}any"]
    text = [format_amount(float(e)) for e in edges]
    middle = [f"{symbol}{a}-{b}" for a, b in pairwise(text)]
    return [f"{symbol}<{text[0]}", *middle, f"{symbol}≥{text[-1]}"]


def bucket_of(amounts: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(N,) float64 → (N,) int64 bucket index in [0, E]; −1 for a missing amount."""
    buckets = np.searchsorted(edges, np.nan_to_num(amounts, nan=0.0), side="right").astype(np.int64)
    return np.where(np.isnan(amounts), -1, buckets)


def fine_to_bucket(edges: np.ndarray) -> np.ndarray:
    """(N_FINE + 1,) int64: fine bin → bucket index (−1 for FINE_MISSING); consistent with bucket_of."""
    lower = np.concatenate([[0.0], GRID])  # each fine bin's lower bound
    out = np.searchsorted(edges, lower, side="right").astype(np.int64)
    return np.concatenate([out, [-1]])


__all__ = [
    "FINE_MISSING",
    "GRID",
    "N_FINE",
    "as_amounts",
    "bucket_labels",
    "bucket_of",
    "fine_bins",
    "fine_to_bucket",
    "format_amount",
    "quantile_edges",
]
