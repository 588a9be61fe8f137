"""The per-event loop of the cached path: score a micro-batch from each user's cached encoder state.

    batch = score_cached(calls, table, schema, max_len, states, events, tags)

The encoder leaves the critical path: after a user's events are folded, their state carries what the
*next* event needs (`UserState.prediction`: h_u, the next-token log-normalizer, the head's sequence
input), and scoring reads it instead of re-encoding the window. Per micro-batch:

1. In arrival order, per event: skip a redelivered txn id; take the user's cached prediction when it was
   made for exactly this state, model and profile and the event is in order; otherwise note the window
   the encoder must read (a user in `stale_ok` instead takes the last prediction made for this model
   and profile, and the event records how many events it lags); compute the features; fold the event
   (everything but its probability).
2. ONE encoder call (`refresh`) for every window without a valid cache — rows planned so that a user's
   windows that share a prefix are one causal pass (`models.fraud.window_plan`) — plus the final window
   of those users, so their next event finds a valid cache. With the refresh keeping up, this call is
   empty unless a user has several events in the batch, a late event, a new profile or a new model.
3. log P_u(x) of every event from h_u, lse_u and the item table (`NextTokenTable`, numpy).
4. In arrival order: each event's P statistics, then its P folded in.
5. ONE head call for the batch (`score_state`); reasons only for rows at or above the threshold.

There are no per-user "rounds": a user's k events need one encoder row (k when the window slides).
Users whose cache is left stale are refreshed later, off the critical path (`refresh_states`).

Equal to the full-window reference (`models.fraud.live.score_events`) to float rounding whenever no
user is in `stale_ok` (tested: full windows, late events, duplicates, profile and model changes).
numpy only: `refresh_fn` / `head_fn` are `FraudScorer.refresh` / `.score_state` in-process, or Triton.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, MutableMapping, Sequence
from dataclasses import dataclass

import numpy as np

from models.fraud.features import FeatureSchema, fill_features
from models.fraud.live import LiveEvent, LiveResult
from models.fraud.next_token import NextTokenTable
from models.fraud.state import (
    N_PROB_STATS,
    Prediction,
    UserState,
    fold,
    fold_probability,
    profile_tag,
    tag64,
)
from models.fraud.window_plan import plan_windows

CallFn = Callable[..., dict[str, np.ndarray]]


@dataclass(frozen=True)
class ModelTags:
    """Which model a state's numbers belong to (`models.fraud.state.tag64` values)."""

    encoder: int  # the frozen encoder: P statistics (`UserState.model_tag`)
    prediction: int  # encoder + head: cached predictions (`Prediction.tag`)

    @classmethod
    def of(cls, model_version: str, head_sha256: str) -> ModelTags:
        """An artefact's tags: its model_version (the encoder weights) and its fraud head's weights
        (a refit changes the head — and a fine-tuned encoder or TextCNN — but not model_version)."""
        return cls(tag64(model_version), tag64(model_version, head_sha256))


@dataclass(frozen=True)
class CachedBatch:
    results: list[LiveResult]  # one per event, in order (duplicates: `duplicate=True`)
    refreshed: frozenset[str]  # users whose cache for their next event was made in this call
    encoder_rows: int  # rows of the critical-path encoder call (0: every event had a valid cache)


@dataclass
class _Need:
    event: int  # the event index, or −1 for a user's final window (the cache for the next event)
    user: str
    window: list[int]
    profile: np.ndarray


def score_cached(
    refresh_fn: CallFn,
    head_fn: CallFn,
    table: NextTokenTable,
    schema: FeatureSchema,
    max_len: int,
    states: MutableMapping[str, UserState],
    events: Sequence[LiveEvent],
    tags: ModelTags,
    *,
    sequence_dim: int = 0,
    reason_threshold: float | None = None,
    stale_ok: Collection[str] = (),
    max_lag: int = 0,
    late: Mapping[str, Prediction] | None = None,
    cache_next: bool = True,
) -> CachedBatch:
    """Score a micro-batch in arrival order and update `states` in place (new users get a fresh state).

    `max_lag` > 0 trades exactness for the critical path: an event whose user's cached prediction lags
    at most that many events is scored from it (the result records the lag); only beyond it is the
    window encoded here. `late`: predictions a refresh made for an earlier state of the user after a
    later batch had already written a newer one; a user's state adopts one when it is newer than its
    own (same model and profile are checked where it is used, like any cached prediction).
    `cache_next=False` leaves out the final windows of step 2: the encoded users' caches for their
    next events are then left stale, for a refresh behind the stream to make (the live worker's, off
    the critical path), instead of being made in the batch's own encoder call."""
    b, d = len(events), table.items.shape[1]
    results: list[LiveResult | None] = [None] * b
    features = np.zeros((b, schema.width), dtype=np.float32)
    hidden = np.zeros((b, d), dtype=np.float32)
    lse = np.zeros(b, dtype=np.float32)
    sequence = np.zeros((b, sequence_dim), dtype=np.float32)
    lag = np.zeros(b, dtype=np.int64)
    needs: list[_Need] = []
    scored: list[int] = []
    profile_tags: dict[str, int] = {}
    for i, event in enumerate(events):
        user = event.user_id
        state = states.get(user)
        if state is None:
            state = states[user] = UserState()
        state.adopt_model(tags.encoder)
        if late and user in late:
            _adopt(state, late[user])
        txn = event.txn
        if txn.txn and state.seen(txn.txn):
            results[i] = LiveResult(user, duplicate=True)
            continue
        ptag = profile_tags.get(user)
        if ptag is None:
            ptag = profile_tags[user] = profile_tag(event.profile)
        cached = state.prediction
        usable = (cached is not None and cached.tag == tags.prediction and cached.profile == ptag
                  and state.context_end(txn.time_ms) == len(state.times))  # fmt: skip
        if usable and (state.n - cached.folded <= max_lag or user in stale_ok):  # type: ignore[union-attr]
            hidden[i], lse[i], lag[i] = cached.hidden, cached.lse, state.n - cached.folded  # type: ignore[union-attr]
            if sequence_dim:
                sequence[i] = cached.sequence  # type: ignore[union-attr]
        else:
            needs.append(_Need(i, user, state.window_tokens(txn.time_ms, max_len), event.profile))
        fill_features(schema, state, txn, features[i])
        fold(state, txn, schema.state)
        scored.append(i)
    refreshed, encoder_rows = _catch_up(refresh_fn, needs, states, max_len, tags, profile_tags, hidden, lse,
                                        sequence, cache_next)  # fmt: skip
    if not scored:
        return CachedBatch([r for r in results if r is not None], refreshed, encoder_rows)

    rows = np.asarray(scored, dtype=np.int64)
    tokens = np.asarray([events[i].txn.token for i in scored], dtype=np.int64)
    logp = table.logp(hidden[rows], lse[rows], tokens)
    stats = np.zeros((len(rows), N_PROB_STATS), dtype=np.float64)
    for j, i in enumerate(scored):  # arrival order: each event sees the P of the user's earlier ones
        state = states[events[i].user_id]
        stats[j] = state.prob_stats()
        fold_probability(state, math.exp(float(logp[j])))
    request = {
        "txn_features": features[rows], "prob_stats": stats, "logp_new": logp, "hidden": hidden[rows],
        "profile": np.stack([np.asarray(events[i].profile, dtype=np.int64) for i in scored]),
    }  # fmt: skip
    if sequence_dim:
        request["sequence"] = sequence[rows]
    if all(events[i].user_embedding is not None for i in scored):
        embeddings = [np.asarray(events[i].user_embedding, np.float32) for i in scored]
        request["user_embedding"] = np.stack(embeddings)
    if reason_threshold is not None:
        request["reason_threshold"] = np.full(len(rows), reason_threshold, dtype=np.float32)
    out = head_fn(**request)
    reasons = out.get("reasons") if reason_threshold is not None else None
    for j, i in enumerate(scored):
        results[i] = LiveResult(
            events[i].user_id, float(out["p_fraud"][j]), float(out["deviation"][j]),
            float(out["surprise"][j]), float(logp[j]), None if reasons is None else reasons[j],
            deviation_log=float(out["deviation_log"][j]), state_lag=int(lag[i]),
        )
    return CachedBatch([r for r in results if r is not None], refreshed, encoder_rows)


def _adopt(state: UserState, late: Prediction) -> None:
    """A late prediction replaces the state's own when it was made after more of the state's events."""
    own = state.prediction
    if late.folded <= state.n and (own is None or late.folded > own.folded):
        state.prediction = late


def _encode(refresh_fn: CallFn, needs: list[_Need]) -> tuple[int, list[tuple[np.ndarray, float, np.ndarray]]]:
    """One refresh call for the needs' windows → (rows run, (h (d,), lse, sequence (S,)) per need)."""
    plan = plan_windows([n.window for n in needs], [n.profile for n in needs], [n.user for n in needs])
    out = refresh_fn(tokens=plan.tokens, lengths=plan.lengths, profile=plan.profile, positions=plan.positions)
    own, empty = out.get("sequence"), np.zeros(0, dtype=np.float32)
    found = [(out["hidden"][r, k], float(out["lse"][r, k]), own[r, k] if own is not None else empty)
             for r, k in zip(plan.slot_row.tolist(), plan.slot_col.tolist(), strict=True)]  # fmt: skip
    return plan.rows, found


def _cache(state: UserState, tag: int, ptag: int, h: np.ndarray, norm: float, seq: np.ndarray) -> None:
    """The state's prediction for its next event (valid until another event is folded)."""
    state.prediction = Prediction(state.n, tag, ptag, norm, np.array(h, dtype=np.float32),
                                  np.array(seq, dtype=np.float32))  # fmt: skip


def _catch_up(
    refresh_fn: CallFn, needs: list[_Need], states: Mapping[str, UserState], max_len: int, tags: ModelTags,
    profile_tags: Mapping[str, int], hidden: np.ndarray, lse: np.ndarray, sequence: np.ndarray,
    cache_next: bool = True,
) -> tuple[frozenset[str], int]:  # fmt: skip
    """Encoder states of the windows without a valid cache, and (`cache_next`) of those users' final
    windows (their cache for the next event) in the same call. → (users cached, rows run)."""
    if not needs:
        return frozenset(), 0
    last_profile = {n.user: n.profile for n in needs} if cache_next else {}
    needs = needs + [_Need(-1, user, states[user].window_tokens(None, max_len), profile)
                     for user, profile in last_profile.items()]  # fmt: skip
    rows, found = _encode(refresh_fn, needs)
    for need, (h, norm, seq) in zip(needs, found, strict=True):
        if need.event >= 0:
            hidden[need.event], lse[need.event] = h, norm
            if sequence.shape[1]:
                sequence[need.event] = seq
        else:
            _cache(states[need.user], tags.prediction, profile_tags[need.user], h, norm, seq)
    return frozenset(last_profile), rows


def refresh_states(
    refresh_fn: CallFn,
    max_len: int,
    states: Mapping[str, UserState],
    profiles: Mapping[str, np.ndarray],
    tags: ModelTags,
) -> int:
    """Make every given user's cache valid for their next event: one encoder call, one row per stale
    user (its current window). Returns the number of rows (0: nothing was stale)."""
    stale: list[_Need] = []
    ptags: dict[str, int] = {}
    for user, state in states.items():
        ptags[user] = profile_tag(profiles[user])
        if state.n and state.valid_prediction(tags.prediction, ptags[user]) is None:
            stale.append(_Need(-1, user, state.window_tokens(None, max_len), profiles[user]))
    if not stale:
        return 0
    rows, found = _encode(refresh_fn, stale)
    for need, (h, norm, seq) in zip(stale, found, strict=True):
        _cache(states[need.user], tags.prediction, ptags[need.user], h, norm, seq)
    return rows
