"""Offline replay: a chronological frame through the *same* state and feature code the worker runs.

For every transaction the replay computes its features and the user's P-statistics from the state built
from that user's earlier events only, and only then folds the transaction into the state — the order the
live worker follows. Leakage is impossible by construction (and `tests/models/fraud/test_replay.py`
proves it by perturbing the future). Per-event cost is ~10–20 µs of Python (profiled in docs/FRAUD.md).

Event order is DATA's `build_sequences` order: per user by event time, ties by source-frame row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from models.fraud.features import FeatureSchema, fill_features
from models.fraud.state import N_PROB_STATS, UserState, update
from models.fraud.txn import TxnColumns

if TYPE_CHECKING:
    from models.sequences import Sequences


@dataclass(frozen=True)
class ReplayResult:
    """Per-transaction outputs in *source-frame row order*."""

    features: np.ndarray  # (N, F) float32 — transaction_features before the event
    prob_stats: np.ndarray  # (N, 5) float64 — the user's P statistics before the event
    states: dict[str, UserState] | None = None  # final state per user id (to warm a worker / backtest)


def replay(
    seqs: Sequences,
    columns: TxnColumns,
    schema: FeatureSchema,
    probs: np.ndarray | None = None,
    keep_states: bool = False,
) -> ReplayResult:
    """Replay all events of `seqs` (rows of `columns`, source order) → features and P statistics.

    `probs` (N,) float64, source order: each event's P_u(x), folded into the state after the event is
    featurized (None: no model, P statistics stay empty).
    """
    n = len(columns)
    order = np.asarray(seqs.row_index, dtype=np.int64)
    views = list(columns.take(order).rows())
    p_seq = probs[order].tolist() if probs is not None else [None] * n
    features = np.zeros((n, schema.width), dtype=np.float32)
    stats = np.zeros((n, N_PROB_STATS), dtype=np.float64)
    offsets = seqs.offsets.tolist()
    config = schema.state
    states: dict[str, UserState] | None = {} if keep_states else None
    for u in range(len(seqs)):
        state = UserState()
        for j in range(offsets[u], offsets[u + 1]):
            txn = views[j]
            fill_features(schema, state, txn, features[j])
            stats[j] = state.prob_stats()
            update(state, txn, p_seq[j], config)
        if states is not None:
            states[str(seqs.user_ids[u])] = state
    out_features = np.empty_like(features)
    out_stats = np.empty_like(stats)
    out_features[order] = features
    out_stats[order] = stats
    return ReplayResult(out_features, out_stats, states)
