"""Fewest encoder rows for a set of windows: a window that is a prefix of another is read off its row.

The encoder is causal with absolute positions, so the hidden state at position m − 1 of a row depends
only on the row's first m tokens: a window w that equals the first len(w) tokens of a longer row of the
same user and profile needs no row of its own (`encode_events` uses the same fact offline). A user with
k events in a micro-batch, whose window is not full, so needs ONE row for all k states. A window that
slides (the user's history is longer than L) starts one token later each event and gets a row each.

An empty window (a user's first event) is the single token [UNK], the models' convention.

numpy only: the stream builds plans; the encoder (in-process or on Triton) only runs them.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from models.ids import PAD_ID, UNK_ID


@dataclass(frozen=True)
class WindowPlan:
    """R encoder rows and, for each of N windows, where its state is read.

    tokens (R, W) int64 right-padded · lengths (R,) int64 · profile (R, P) int64 ·
    positions (R, K) int64 — the positions whose states are wanted, −1 = none ·
    slot_row (N,), slot_col (N,) — window i's state is output [slot_row[i], slot_col[i]].
    """

    tokens: np.ndarray
    lengths: np.ndarray
    profile: np.ndarray
    positions: np.ndarray
    slot_row: np.ndarray
    slot_col: np.ndarray

    @property
    def rows(self) -> int:
        return int(self.tokens.shape[0])


def plan_windows(
    windows: Sequence[Sequence[int]], profiles: Sequence[np.ndarray], groups: Sequence[Hashable]
) -> WindowPlan:
    """windows[i] (token ids, chronological) of group[i] (a user) with profile ids profiles[i] (P,).

    >>> plan = plan_windows([[5, 6], [5, 6, 7], [], [8]], [np.zeros(0, np.int64)] * 4, ["a", "a", "a", "b"])
    >>> plan.rows, plan.positions.tolist(), plan.slot_row.tolist(), plan.slot_col.tolist()
    (3, [[2, 1], [0, -1], [0, -1]], [0, 0, 2, 1], [1, 0, 0, 0])
    """
    n = len(windows)
    rows: list[list[int]] = []
    row_profile: list[np.ndarray] = []
    row_positions: list[list[int]] = []
    by_group: dict[Hashable, list[int]] = {}
    slot_row = np.zeros(n, dtype=np.int64)
    slot_col = np.zeros(n, dtype=np.int64)
    for i in sorted(range(n), key=lambda j: -len(windows[j])):  # longest first: prefixes find their row
        window = list(windows[i]) or [UNK_ID]
        m = len(window)
        profile = np.asarray(profiles[i], dtype=np.int64)
        candidates = by_group.setdefault(groups[i], [])
        r = next((r for r in candidates if len(rows[r]) >= m and rows[r][:m] == window
                  and np.array_equal(row_profile[r], profile)), None)  # fmt: skip
        if r is None:
            r = len(rows)
            rows.append(window)
            row_profile.append(profile)
            row_positions.append([])
            candidates.append(r)
        positions = row_positions[r]
        if m - 1 not in positions:
            positions.append(m - 1)
        slot_row[i], slot_col[i] = r, positions.index(m - 1)
    width = max((len(row) for row in rows), default=1)
    k = max((len(p) for p in row_positions), default=1)
    tokens = np.full((len(rows), width), PAD_ID, dtype=np.int64)
    positions_out = np.full((len(rows), k), -1, dtype=np.int64)
    for r, (row, positions) in enumerate(zip(rows, row_positions, strict=True)):
        tokens[r, : len(row)] = row
        positions_out[r, : len(positions)] = positions
    p = len(profiles[0]) if n else 0
    profile_out = np.stack(row_profile) if rows else np.zeros((0, p), dtype=np.int64)
    lengths = np.asarray([len(row) for row in rows], dtype=np.int64)
    return WindowPlan(tokens, lengths, profile_out, positions_out, slot_row, slot_col)
