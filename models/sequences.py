"""Ragged per-user chronological token sequences, and the evaluation sets cut from them.

Why ragged (offsets + one flat array) rather than lists of arrays: 10M events in four flat int64
arrays are 320 MB and every operation (prefix before a time, drop the last n, gather histories) is a
vectorised numpy expression; a list of 1M small arrays would need Python loops everywhere.

Two evaluation protocols:
- "leave_last_out" (MovieLens, generative-recommenders): each user's last event is the target and the
  events before it are the history. The validation set is the same call on `seqs.drop_last(1)`.
- "after_time" (transactions, chronological split): every event at or after `cut_ms` is a target; its
  history is the user's preceding events — including earlier test events, as a streaming scorer would
  have seen them. Optionally at most `max_targets_per_user` targets per user (seeded sample).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Literal

import numpy as np
import pandas as pd

from models.batch import PAD_ID


@dataclass(frozen=True)
class Sequences:
    """U users, N events in user-major, chronological order (ties keep source-frame order).

    >>> frame = pd.DataFrame({"user_id": ["b", "a", "a"], "timestamp": [5, 9, 1]})
    >>> seqs = build_sequences(frame, np.array([7, 8, 9]))
    >>> seqs.user_ids.tolist(), seqs.offsets.tolist(), seqs.tokens.tolist(), seqs.row_index.tolist()
    (['a', 'b'], [0, 2, 3], [9, 8, 7], [2, 1, 0])
    """

    user_ids: np.ndarray  # (U,) object — user id strings, sorted
    offsets: np.ndarray  # (U + 1,) int64 — user u owns events offsets[u]:offsets[u + 1]
    tokens: np.ndarray  # (N,) int64 — token ids
    times: np.ndarray  # (N,) int64 — epoch milliseconds, non-decreasing within a user
    row_index: np.ndarray  # (N,) int64 — row of the event in the source frame

    def __len__(self) -> int:
        return len(self.user_ids)

    @property
    def lengths(self) -> np.ndarray:
        """(U,) int64 events per user."""
        return np.diff(self.offsets)

    @property
    def n_events(self) -> int:
        return len(self.tokens)

    @cached_property
    def user_of_event(self) -> np.ndarray:
        """(N,) int64 user row of each event."""
        return np.repeat(np.arange(len(self.user_ids), dtype=np.int64), self.lengths)

    def user(self, i: int) -> np.ndarray:
        """(length_i,) tokens of user row i, chronological."""
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]

    def _keep(self, keep: np.ndarray) -> Sequences:
        counts = np.bincount(self.user_of_event[keep], minlength=len(self.user_ids))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return Sequences(self.user_ids, offsets, self.tokens[keep], self.times[keep], self.row_index[keep])

    def before(self, time_ms: int) -> Sequences:
        """Each user's prefix strictly before `time_ms` (users keep their rows, possibly empty)."""
        return self._keep(self.times < int(time_ms))

    def drop_last(self, n: int = 1) -> Sequences:
        """Each user's sequence without its last n events."""
        position = np.arange(self.n_events) - self.offsets[self.user_of_event]
        return self._keep(position < (self.lengths - n)[self.user_of_event])

    def without_users(self, rows: np.ndarray) -> Sequences:
        """The same user rows with the given users' events removed (a cold-start hold-out: those users
        keep their rows, so evaluation sets and profile features still index them)."""
        return self._keep(~np.isin(self.user_of_event, np.asarray(rows, dtype=np.int64)))

    def select_users(self, rows: np.ndarray) -> Sequences:
        """The sequences of the given user rows (in the given order)."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        index = _ragged_index(starts, ends)
        offsets = np.concatenate([[0], np.cumsum(ends - starts)]).astype(np.int64)
        return Sequences(
            self.user_ids[rows], offsets, self.tokens[index], self.times[index], self.row_index[index]
        )


def to_epoch_ms(values: pd.Series) -> np.ndarray:
    """Timestamps → (N,) int64 epoch ms. Datetimes (naive = UTC) and ISO strings are converted;
    numbers are taken as epoch milliseconds (the event contract). Missing values raise ValueError."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = pd.to_numeric(values).to_numpy(dtype=np.float64, na_value=np.nan)
        if np.isnan(numbers).any():
            raise ValueError(f"{int(np.isnan(numbers).sum())} missing timestamps")
        return np.rint(numbers).astype(np.int64)
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = pd.to_datetime(values, utc=True)
    else:
        stamps = pd.to_datetime(values, utc=True, format="ISO8601")
    if stamps.isna().any():
        raise ValueError(f"{int(stamps.isna().sum())} missing timestamps")
    return stamps.dt.tz_localize(None).to_numpy(dtype="datetime64[ms]").astype(np.int64)


def build_sequences(
    frame: pd.DataFrame, tokens: np.ndarray, user_col: str = "user_id", time_col: str = "timestamp"
) -> Sequences:
    """frame (N rows) + tokens (N,) → per-user chronological Sequences (users sorted by id)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    if len(tokens) != len(frame):
        raise ValueError(f"{len(tokens)} tokens for {len(frame)} rows")
    for column in (user_col, time_col):
        if column not in frame.columns:
            raise KeyError(f"column {column!r} not in frame (columns: {list(frame.columns)})")
    users = frame[user_col]
    if users.isna().any():
        raise ValueError(f"{int(users.isna().sum())} rows without {user_col}")
    codes, uniques = pd.factorize(users.astype(str), sort=True)
    times = to_epoch_ms(frame[time_col])
    order = np.lexsort((np.arange(len(frame)), times, codes))
    counts = np.bincount(codes, minlength=len(uniques))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return Sequences(
        user_ids=np.asarray(uniques, dtype=object),
        offsets=offsets,
        tokens=tokens[order],
        times=times[order],
        row_index=order.astype(np.int64),
    )


@dataclass(frozen=True)
class EvalSet:
    """N (history, target) pairs. Histories are slices [starts, ends) of the source sequences' tokens
    (not copied); each holds up to `max_len` events just before its target, chronologically."""

    source_tokens: np.ndarray  # (M,) int64 — the Sequences' flat token array
    starts: np.ndarray  # (N,) int64 — first history position in source_tokens
    ends: np.ndarray  # (N,) int64 — one past the last history position (= the target's position)
    targets: np.ndarray  # (N,) int64 — token to predict
    user_row: np.ndarray  # (N,) int64 — user row in the Sequences
    target_row: np.ndarray  # (N,) int64 — row of the target event in the source frame
    target_time: np.ndarray  # (N,) int64 — epoch ms of the target event
    max_len: int
    mode: str
    source_times: np.ndarray | None = None  # (M,) int64 — the Sequences' flat epoch-ms array

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def lengths(self) -> np.ndarray:
        """(N,) int64 history lengths (1 ≤ length ≤ max_len with the default min_history)."""
        return self.ends - self.starts

    @cached_property
    def offsets(self) -> np.ndarray:
        """(N + 1,) int64 offsets of the materialised ragged histories (see `tokens`)."""
        return np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)

    @cached_property
    def tokens(self) -> np.ndarray:
        """(sum of lengths,) int64 all histories concatenated (materialised on first use)."""
        return self.source_tokens[_ragged_index(self.starts, self.ends)]

    def history(self, i: int) -> np.ndarray:
        return self.source_tokens[self.starts[i] : self.ends[i]]

    def padded(
        self, max_len: int | None = None, rows: slice | np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """→ tokens (n, max_len) int64 right-padded with PAD_ID (latest max_len events), lengths (n,).

        `rows` selects a batch (slice or index array) without materialising the others.
        """
        return self._padded(self.source_tokens, max_len, rows)

    def padded_times(self, max_len: int | None = None, rows: slice | np.ndarray | None = None) -> np.ndarray:
        """→ (n, max_len) int64 epoch ms aligned with `padded`'s tokens (0 past each row's end)."""
        if self.source_times is None:
            raise ValueError("this EvalSet was built without times")
        return self._padded(self.source_times, max_len, rows)[0]

    def _padded(
        self, source: np.ndarray, max_len: int | None, rows: slice | np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        width = int(max_len or self.max_len)
        select = slice(None) if rows is None else rows
        ends = self.ends[select]
        starts = np.maximum(self.starts[select], ends - width)
        lengths = ends - starts
        column = np.arange(width, dtype=np.int64)
        index = starts[:, None] + column[None, :]
        real = column[None, :] < lengths[:, None]
        safe = np.where(real, index, 0) if len(source) else np.zeros_like(index)
        gathered = source[safe] if len(source) else safe
        return np.where(real, gathered, PAD_ID).astype(np.int64), lengths.astype(np.int64)

    def subset(self, rows: slice | np.ndarray) -> EvalSet:
        return replace(
            self,
            starts=self.starts[rows],
            ends=self.ends[rows],
            targets=self.targets[rows],
            user_row=self.user_row[rows],
            target_row=self.target_row[rows],
            target_time=self.target_time[rows],
        )


def make_eval_set(
    seqs: Sequences,
    mode: Literal["leave_last_out", "after_time"] = "leave_last_out",
    cut_ms: int | None = None,
    max_len: int = 200,
    max_targets_per_user: int | None = None,
    seed: int = 0,
    min_history: int = 1,
) -> EvalSet:
    """Cut an EvalSet from Sequences; targets with fewer than `min_history` earlier events are skipped.

    >>> seqs = Sequences(np.array(["a", "b"], dtype=object), np.array([0, 3, 4]), np.array([5, 6, 7, 8]),
    ...                  np.array([1, 2, 3, 1]), np.arange(4))
    >>> ev = make_eval_set(seqs, "leave_last_out")
    >>> ev.targets.tolist(), ev.history(0).tolist(), len(ev)
    ([7], [5, 6], 1)
    >>> ev = make_eval_set(seqs, "after_time", cut_ms=2)
    >>> ev.targets.tolist(), [ev.history(i).tolist() for i in range(len(ev))]
    ([6, 7], [[5], [5, 6]])
    """
    if max_len < 1:
        raise ValueError("max_len must be ≥ 1")
    user_start = seqs.offsets[:-1]
    if mode == "leave_last_out":
        has = seqs.lengths >= min_history + 1
        positions = (seqs.offsets[1:] - 1)[has]
        users = np.flatnonzero(has).astype(np.int64)
    elif mode == "after_time":
        if cut_ms is None:
            raise ValueError("after_time needs cut_ms")
        positions = np.flatnonzero(seqs.times >= int(cut_ms)).astype(np.int64)
        users = seqs.user_of_event[positions]
        enough = positions - user_start[users] >= min_history
        positions, users = positions[enough], users[enough]
        if max_targets_per_user is not None:
            positions, users = _cap_per_user(positions, users, max_targets_per_user, seed)
    else:
        raise ValueError(f"unknown mode {mode!r} (leave_last_out | after_time)")
    starts = np.maximum(user_start[users], positions - max_len)
    return EvalSet(
        source_tokens=seqs.tokens,
        starts=starts.astype(np.int64),
        ends=positions.astype(np.int64),
        targets=seqs.tokens[positions],
        user_row=users.astype(np.int64),
        target_row=seqs.row_index[positions],
        target_time=seqs.times[positions],
        max_len=int(max_len),
        mode=mode,
        source_times=seqs.times,
    )


def cold_start_eval_set(
    seqs: Sequences, users: np.ndarray, max_history: int = 4, max_len: int = 200
) -> EvalSet:
    """The first events of the given users as targets: every event with 1 ≤ earlier events ≤
    `max_history` (a new user's 2nd to 5th transaction), each with the user's whole short history.

    With `users` held out of training (`Sequences.without_users`), this is the new-customer case, where
    the profile is most of what a model knows about the user.

    >>> seqs = Sequences(np.array(["a", "b"], dtype=object), np.array([0, 3, 9]),
    ...                  np.arange(9) + 5, np.arange(9), np.arange(9))
    >>> ev = cold_start_eval_set(seqs, np.array([1]), max_history=2)
    >>> ev.targets.tolist(), [ev.history(i).tolist() for i in range(len(ev))]
    ([9, 10], [[8], [8, 9]])
    """
    if max_history < 1:
        raise ValueError("max_history must be ≥ 1")
    users = np.sort(np.asarray(users, dtype=np.int64))
    user_start = seqs.offsets[:-1]
    chosen = np.isin(seqs.user_of_event, users)
    position = np.arange(seqs.n_events) - user_start[seqs.user_of_event]
    positions = np.flatnonzero(chosen & (position >= 1) & (position <= max_history)).astype(np.int64)
    owners = seqs.user_of_event[positions]
    starts = np.maximum(user_start[owners], positions - max_len)
    return EvalSet(
        source_tokens=seqs.tokens,
        starts=starts.astype(np.int64),
        ends=positions,
        targets=seqs.tokens[positions],
        user_row=owners.astype(np.int64),
        target_row=seqs.row_index[positions],
        target_time=seqs.times[positions],
        max_len=int(max_len),
        mode="cold_start",
        source_times=seqs.times,
    )


def _cap_per_user(
    positions: np.ndarray, users: np.ndarray, cap: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Keep a seeded random sample of at most `cap` targets per user, in chronological order."""
    if cap < 1:
        raise ValueError("max_targets_per_user must be ≥ 1")
    keys = np.random.default_rng(seed).random(len(positions))
    order = np.lexsort((keys, users))
    sorted_users = users[order]
    first = (
        np.concatenate([[True], sorted_users[1:] != sorted_users[:-1]]) if len(order) else np.zeros(0, bool)
    )
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    rank = np.arange(len(order)) - group_start
    kept = np.sort(order[rank < cap])
    return positions[kept], users[kept]


def _ragged_index(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenated aranges [starts[i], ends[i]) as one (sum of lengths,) int64 index."""
    lengths = (ends - starts).astype(np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shifts = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(total, dtype=np.int64) + shifts
