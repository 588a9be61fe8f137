"""Vectorized sampling helpers: one categorical draw per row of a probability table, without Python loops."""

from __future__ import annotations

import numpy as np


def row_cdf(weights: np.ndarray) -> np.ndarray:
    """Row-normalised cumulative sums (last column exactly 1), ready for `draw_rows`."""
    w = np.asarray(weights, dtype=np.float64)
    cdf = np.cumsum(w, axis=1)
    cdf /= cdf[:, -1:]
    cdf[:, -1] = 1.0
    return cdf


def draw_rows(rng: np.random.Generator, cdf: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One column index per entry of `rows`, drawn from that row of `cdf` (inverse-CDF on a flattened table).

    Shifting row r's CDF by r makes the flattened table globally sorted, so one `searchsorted`
    serves every row at once.
    """
    n_rows, n_cols = cdf.shape
    flat = (cdf + np.arange(n_rows)[:, None]).ravel()
    u = rng.random(rows.shape[0]) * (1 - 1e-12) + rows
    idx = np.searchsorted(flat, u, side="right") - rows.astype(np.int64) * n_cols
    return np.minimum(idx, n_cols - 1)


def draw_matrix(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One column index per row of a (rows × choices) weight matrix built for exactly these draws."""
    cdf = np.cumsum(weights, axis=1)
    u = rng.random(weights.shape[0]) * cdf[:, -1]
    return np.minimum((cdf < u[:, None]).sum(axis=1), weights.shape[1] - 1)


def segment_positions(sizes: np.ndarray) -> np.ndarray:
    """0, 1, …, size-1 for each segment, concatenated (position of an event inside its incident)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    starts = np.cumsum(sizes) - sizes
    return np.arange(total, dtype=np.int64) - np.repeat(starts, sizes)


def segment_cumsum(values: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Running sum of `values` restarting at each segment (time offsets of a burst's events)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    cs = np.cumsum(values)
    ends = np.cumsum(sizes)
    base = np.concatenate([[0], cs[ends[:-1] - 1]]) if len(sizes) else np.zeros(0)
    return cs - np.repeat(base, sizes)


def split_budget(rng: np.random.Generator, budget: int, low: int, high: int) -> np.ndarray:
    """Incident sizes in [low, high] summing exactly to `budget` (one short incident if budget < low)."""
    if budget <= 0:
        return np.zeros(0, dtype=np.int64)
    n = budget // max(low, 1) + 1
    sizes = rng.integers(low, high + 1, size=n)
    cs = np.cumsum(sizes)
    k = int(np.searchsorted(cs, budget, side="left")) + 1
    sizes = sizes[:k].copy()
    sizes[-1] -= int(sizes.sum()) - budget
    if len(sizes) > 1 and sizes[-1] < low:  # fold a short tail into the previous incident
        sizes[-2] += sizes[-1]
        sizes = sizes[:-1]
    return sizes.astype(np.int64)
