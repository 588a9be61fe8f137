"""From DATA's ragged numpy sequences to `SequenceBatch`es: training windows and evaluation batches.

Training: each user's chronological tokens are cut into windows of up to `max_len + 1` tokens; inputs are
the first `max_len`, targets the same window shifted by one (PAD past the end). Window modes:

- `"random_crop"` (default): one window per user per epoch, ending at a uniformly random position
  (≥ max_len + 1 when the user is that long) — every part of a long history is seen over the epochs,
  while each user weighs the same in an epoch.
- `"latest"`: one window per user, the most recent `max_len + 1` tokens (generative-recommenders' ML-1M).
- `"all"`: consecutive windows covering every target exactly once (long users weigh more).

Everything is vectorized numpy (one gather per batch); randomness comes from `(seed, epoch)` only, so an
epoch's batches are reproducible. Batches are trimmed to their longest row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from models.batch import PAD_ID, UNK_ID, SequenceBatch

if TYPE_CHECKING:
    from models.sequences import EvalSet, Sequences


@dataclass(frozen=True)
class UserFeatures:
    """Per-user profile ids and demographics, aligned with the rows of a `Sequences`."""

    profile: np.ndarray  # (U, P) int64 — 0 = missing
    demographics: np.ndarray | None = None  # (U, D) float32 — NaN = missing

    @classmethod
    def empty(cls, n_users: int) -> UserFeatures:
        """No profile at all: (U, 0) ids, no demographics."""
        return cls(np.zeros((n_users, 0), dtype=np.int64), None)

    @classmethod
    def align(
        cls,
        user_ids: np.ndarray,
        profile_user_ids: np.ndarray,
        ids: np.ndarray,
        demographics: np.ndarray | None,
    ) -> UserFeatures:
        """Reorder profile rows (keyed by `profile_user_ids`) to `user_ids`; users without a profile get
        the missing id 0 and NaN demographics."""
        rows = pd.Index(pd.Series(profile_user_ids).astype(str)).get_indexer(pd.Series(user_ids).astype(str))
        known = rows >= 0
        profile = np.zeros((len(user_ids), ids.shape[1]), dtype=np.int64)
        profile[known] = ids[rows[known]]
        demo = None
        if demographics is not None:
            demo = np.full((len(user_ids), demographics.shape[1]), np.nan, dtype=np.float32)
            demo[known] = demographics[rows[known]]
        return cls(profile, demo)

    def take(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(n,) user rows → profile (n, P) int64, demographics (n, D) float32 | None."""
        demo = None if self.demographics is None else torch.from_numpy(self.demographics[rows])
        return torch.from_numpy(self.profile[rows]), demo


def _window_ends_random_crop(
    n: np.ndarray, window: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    lo = np.minimum(n, window)
    return np.arange(len(n)), lo + np.floor(rng.random(len(n)) * (n - lo + 1)).astype(np.int64)


def _window_ends_latest(
    n: np.ndarray, window: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(len(n)), n.copy()


def _window_ends_all(n: np.ndarray, window: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    step = window - 1  # targets per window
    counts = np.ceil((n - 1) / step).astype(np.int64)
    users = np.repeat(np.arange(len(n)), counts)
    k = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return users, n[users] - k * step


WINDOW_MODES: dict[str, Callable[[np.ndarray, int, np.random.Generator], tuple[np.ndarray, np.ndarray]]] = {
    "random_crop": _window_ends_random_crop,
    "latest": _window_ends_latest,
    "all": _window_ends_all,
}


@dataclass(frozen=True)
class WindowSpec:
    max_len: int  # model inputs per window (a window holds max_len + 1 tokens)
    batch_size: int = 128
    mode: str = "random_crop"  # "random_crop" | "latest" | "all"
    seed: int = 0
    shuffle: bool = True

    def __post_init__(self) -> None:
        if self.mode not in WINDOW_MODES:
            raise ValueError(f"window mode must be one of {sorted(WINDOW_MODES)}, got {self.mode!r}")


class TrainBatches:
    """Epochs of training `SequenceBatch`es (tokens, lengths, targets, profile, demographics, user_index).

    Users with fewer than 2 tokens have no target and are skipped.
    """

    def __init__(self, seqs: Sequences, features: UserFeatures, spec: WindowSpec) -> None:
        offsets = np.asarray(seqs.offsets, dtype=np.int64)
        lengths = np.diff(offsets)
        self._users = np.flatnonzero(lengths >= 2)
        self._starts = offsets[self._users]
        self._lengths = lengths[self._users]
        self._tokens = np.asarray(seqs.tokens, dtype=np.int64)
        self._times = np.asarray(seqs.times, dtype=np.int64)
        self.features = features
        self.spec = spec

    def windows(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """→ user rows (W,), absolute start (W,), absolute end (W,) of each window, in batch order."""
        rng = np.random.default_rng([self.spec.seed, epoch])
        local, ends = WINDOW_MODES[self.spec.mode](self._lengths, self.spec.max_len + 1, rng)
        starts = np.maximum(ends - self.spec.max_len - 1, 0)
        order = rng.permutation(len(local)) if self.spec.shuffle else np.arange(len(local))
        local, starts, ends = local[order], starts[order], ends[order]
        base = self._starts[local]
        return self._users[local], base + starts, base + ends

    def n_batches(self, epoch: int = 0) -> int:
        return -(-len(self.windows(epoch)[0]) // self.spec.batch_size)

    def epoch(self, epoch: int) -> Iterator[SequenceBatch]:
        users, starts, ends = self.windows(epoch)
        for i in range(0, len(users), self.spec.batch_size):
            yield self._gather(
                users[i : i + self.spec.batch_size],
                starts[i : i + self.spec.batch_size],
                ends[i : i + self.spec.batch_size],
            )

    def _gather(self, users: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> SequenceBatch:
        width = int((ends - starts).max())
        pos = starts[:, None] + np.arange(width)
        valid = pos < ends[:, None]
        gather = np.minimum(pos, ends[:, None] - 1)
        window = np.where(valid, self._tokens[gather], PAD_ID)
        inputs = np.where(valid[:, 1:], window[:, :-1], PAD_ID)  # a window's last token is only a target
        times = np.where(valid[:, 1:], self._times[gather][:, :-1], 0)
        profile, demographics = self.features.take(users)
        return SequenceBatch(
            tokens=torch.from_numpy(inputs),
            lengths=torch.from_numpy(ends - starts - 1),
            profile=profile,
            targets=torch.from_numpy(np.ascontiguousarray(window[:, 1:])),
            demographics=demographics,
            user_index=torch.from_numpy(users.astype(np.int64)),
            times=torch.from_numpy(np.ascontiguousarray(times)),
        )


def eval_batches(
    ev: EvalSet, features: UserFeatures, max_len: int, batch_size: int = 512
) -> Iterator[tuple[SequenceBatch, torch.Tensor]]:
    """Evaluation rows → (batch of histories, targets (n,) int64), in the EvalSet's order.

    Histories are the up-to-`max_len` tokens before each target, right-padded. A row with an empty history
    (a user's very first event) gets a single UNK token, so every model scores every row.
    """
    targets = np.asarray(ev.targets, dtype=np.int64)
    user_rows = np.asarray(ev.user_row, dtype=np.int64)
    for i in range(0, len(targets), batch_size):
        rows = slice(i, i + batch_size)
        tokens, lengths = ev.padded(max_len, rows=rows)
        empty = lengths == 0
        tokens[empty, 0], lengths[empty] = UNK_ID, 1
        width = int(lengths.max())
        times = None
        if ev.source_times is not None:
            times = torch.from_numpy(np.ascontiguousarray(ev.padded_times(max_len, rows=rows)[:, :width]))
        profile, demographics = features.take(user_rows[rows])
        batch = SequenceBatch(
            tokens=torch.from_numpy(np.ascontiguousarray(tokens[:, :width])),
            lengths=torch.from_numpy(lengths),
            profile=profile,
            demographics=demographics,
            user_index=torch.from_numpy(user_rows[rows]),
            times=times,
        )
        yield batch, torch.from_numpy(targets[rows])
