"""The per-event scoring loop shared by the live worker, the backtest and the exact offline evaluation.

    results = score_events(scorer.score, schema, max_len, states, events)

For a micro-batch of events: skip redelivered txn ids (`UserState.seen`), build each event's window,
features and P-statistics from its user's state, call `score_fn` once per *round*, then fold every event
into its state with p = exp(logp_new). A user with several events in one micro-batch has them scored in
successive rounds (round r = the user's r-th event in the batch), so the second sees the first in its
state exactly as if they had arrived in separate batches — results do not depend on batch boundaries.

numpy only: `score_fn` is `FraudScorer.score` in-process, or a Triton client with the same signature.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from models.fraud.features import FeatureSchema, fill_features
from models.fraud.state import N_PROB_STATS, UserState, update
from models.fraud.txn import TxnView
from models.ids import PAD_ID

ScoreFn = Callable[..., dict[str, np.ndarray]]


@dataclass(frozen=True)
class LiveEvent:
    user_id: str
    txn: TxnView
    profile: np.ndarray  # (P,) int64 profile ids of the user
    user_embedding: np.ndarray | None = None  # (d,) cached e_u, if the stream has one


@dataclass(frozen=True)
class LiveResult:
    """One scored event (or a skipped duplicate: `duplicate=True`, no scores, state untouched)."""

    user_id: str
    p_fraud: float = float("nan")
    deviation: float = 0.0
    surprise: float = 0.0
    logp_new: float = 0.0
    reasons: np.ndarray | None = None  # (S,) contributions in the scorer's signal order
    duplicate: bool = False
    deviation_log: float = 0.0  # Δ on log P: the deviation that moves with a 60K-token vocabulary
    state_lag: int = 0  # events folded into the state but not into the cached h_u it was scored from


def tokenize_records(tokenizer: Any, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """(B,) token ids of transaction records (dicts with the contract's fields) — one vectorized call."""
    return np.asarray(tokenizer.encode(pd.DataFrame.from_records(list(records))), dtype=np.int64)


def _rounds(events: Sequence[LiveEvent]) -> list[list[int]]:
    seen: dict[str, int] = {}
    rounds: list[list[int]] = []
    for i, event in enumerate(events):
        r = seen.get(event.user_id, 0)
        seen[event.user_id] = r + 1
        if r == len(rounds):
            rounds.append([])
        rounds[r].append(i)
    return rounds


def build_request(
    schema: FeatureSchema, max_len: int, states: Sequence[UserState], events: Sequence[LiveEvent]
) -> dict[str, np.ndarray]:
    """The `score_fn` keyword arguments for events whose users' states are `states` (same order)."""
    b = len(events)
    windows = [s.window_tokens(e.txn.time_ms, max_len) for s, e in zip(states, events, strict=True)]
    width = max(1, max((len(w) for w in windows), default=0))
    tokens = np.full((b, width), PAD_ID, dtype=np.int64)
    for i, window in enumerate(windows):
        tokens[i, : len(window)] = window
    features = np.zeros((b, schema.width), dtype=np.float32)
    stats = np.zeros((b, N_PROB_STATS), dtype=np.float64)
    for i, (state, event) in enumerate(zip(states, events, strict=True)):
        fill_features(schema, state, event.txn, features[i])
        stats[i] = state.prob_stats()
    request = {
        "tokens": tokens,
        "lengths": np.asarray([len(w) for w in windows], dtype=np.int64),
        "profile": np.stack([np.asarray(e.profile, dtype=np.int64) for e in events]),
        "new_token": np.asarray([e.txn.token for e in events], dtype=np.int64),
        "txn_features": features,
        "prob_stats": stats,
    }
    if all(e.user_embedding is not None for e in events):
        request["user_embedding"] = np.stack([np.asarray(e.user_embedding, np.float32) for e in events])
    return request


def score_events(
    score_fn: ScoreFn,
    schema: FeatureSchema,
    max_len: int,
    states: MutableMapping[str, UserState],
    events: Sequence[LiveEvent],
    reasons: bool = True,
    model_tag: int = 0,
) -> list[LiveResult]:
    """Score a micro-batch in arrival order and update `states` in place (new users get a fresh state).

    The full-window reference: every event's window goes through the encoder. `model_tag` names the
    encoder (`UserState.adopt_model`: another encoder's P statistics are reset).
    """
    results: list[LiveResult | None] = [None] * len(events)
    for round_ in _rounds(events):
        todo = []
        for i in round_:
            event = events[i]
            state = states.get(event.user_id)
            if state is None:
                state = states[event.user_id] = UserState()
            state.adopt_model(model_tag)
            if event.txn.txn and state.seen(event.txn.txn):
                results[i] = LiveResult(event.user_id, duplicate=True)
            else:
                todo.append(i)
        if not todo:
            continue
        batch = [events[i] for i in todo]
        batch_states = [states[e.user_id] for e in batch]
        out = score_fn(**build_request(schema, max_len, batch_states, batch), reasons=reasons)
        for j, (i, event, state) in enumerate(zip(todo, batch, batch_states, strict=True)):
            logp = float(out["logp_new"][j])
            update(state, event.txn, math.exp(logp), schema.state)
            results[i] = LiveResult(
                event.user_id, float(out["p_fraud"][j]), float(out["deviation"][j]),
                float(out["surprise"][j]), logp, out["reasons"][j] if reasons and "reasons" in out else None,
                deviation_log=float(out["deviation_log"][j]),
            )
    return [r for r in results if r is not None]


def top_reasons(contributions: np.ndarray, names: Sequence[str], k: int = 3) -> list[dict[str, float]]:
    """One row (S,) → the k signals that pushed the score up most, as the Alert's `reasons`.

    >>> top_reasons(np.array([0.1, 2.0, -1.0]), ["amount", "new_device", "velocity_1h"], k=2)
    [{'signal': 'new_device', 'contribution': 2.0}, {'signal': 'amount', 'contribution': 0.1}]
    """
    order = np.argsort(-np.asarray(contributions), kind="stable")[:k]
    return [{"signal": str(names[i]), "contribution": round(float(contributions[i]), 4)} for i in order]
