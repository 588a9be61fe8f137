"""The scoring engine: decoded transactions in, scores and alerts out — for the live worker AND the backtest.

One code path for state and features: the per-event loop is `models.fraud.cached_scoring.score_cached`
(each user's cached encoder state, the encoder only for windows without a valid cache), fed by the
artefact's tokenizer, feature schema and item table (`LiveModel`) and scored by any `Scorer` (Triton
or in-process). `refresh` makes the touched users' caches valid for their next event: the caller runs
it after the batch's outputs are handed on (the worker: after its transaction committed; the backtest:
before the next batch). `reference=True` scores with the full-window loop
(`models.fraud.live.score_events`) instead: the reference the cached path is tested against.

The engine only adds what a stream needs around it: copy-on-write state (a failed batch leaves state
untouched, so it can be retried), degraded-mode fallback, and the records to publish.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

import numpy as np

from models.fraud.cached_scoring import CallFn, refresh_states, score_cached
from models.fraud.live import LiveEvent, LiveResult, ScoreFn, score_events
from models.fraud.state import Prediction, UserState
from models.fraud.txn import record_view
from stream.events import Alert, Reason, Transaction, TransactionScore
from stream.live_model import LiveModel
from stream.scoring import (
    RefreshRequest,
    Scorer,
    ScoreRequest,
    ScorerUnavailable,
    StateScoreRequest,
    blocking_call,
    blocking_score_fn,
)

TOP_REASONS = 3
T = TypeVar("T")


@dataclass(frozen=True)
class CachedProfile:
    """What `user_embeddings` keeps per user: profile ids, e_u, and when/with which model it was made."""

    profile_ids: np.ndarray  # (P,) int64
    embedding: np.ndarray | None  # (d,) float32
    model_version: str
    updated_ms: int

    def to_bytes(self) -> bytes:
        embedding = (
            None if self.embedding is None else base64.b64encode(self.embedding.astype("<f4").tobytes())
        )
        return json.dumps(
            {
                "profile_ids": self.profile_ids.astype(int).tolist(),
                "embedding": embedding.decode() if embedding else None,
                "model_version": self.model_version,
                "updated_ms": self.updated_ms,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> CachedProfile:
        data = json.loads(raw)
        embedding = data.get("embedding")
        return cls(
            profile_ids=np.asarray(data["profile_ids"], dtype=np.int64),
            embedding=np.frombuffer(base64.b64decode(embedding), dtype="<f4").copy() if embedding else None,
            model_version=str(data["model_version"]),
            updated_ms=int(data["updated_ms"]),
        )

    def is_fresh(self, model_version: str, ttl_s: float, now_ms: int) -> bool:
        return (
            self.embedding is not None
            and self.model_version == model_version
            and now_ms - self.updated_ms <= ttl_s * 1000
        )


class ProfileDecoder:
    """`CachedProfile.from_bytes` with a bounded memo of the stored bytes: a user's cached profile
    changes rarely, and decoding its JSON and base64 again for every scored event was ~3 % of the
    worker's GIL time at full speed. Keyed by the bytes themselves, so a changed profile is decoded
    afresh; the arrays handed out are read-only, since one decoded profile serves many batches."""

    def __init__(self, max_entries: int = 8192) -> None:
        self.max_entries = max_entries
        self._memo: dict[bytes, CachedProfile] = {}

    def __call__(self, raw: bytes) -> CachedProfile:
        cached = self._memo.get(raw)
        if cached is None:
            cached = CachedProfile.from_bytes(raw)
            cached.profile_ids.setflags(write=False)
            if cached.embedding is not None:
                cached.embedding.setflags(write=False)
            if len(self._memo) >= self.max_entries:
                self._memo.clear()  # bounded: the live users' profiles come back within a batch or two
            self._memo[bytes(raw)] = cached
        return cached


class ScoreNumbers(NamedTuple):
    """What a scored event's `TransactionScore` carries besides its txn and its batch's constants."""

    score: float
    deviation: float
    deviation_log: float
    surprise: float
    alerted: bool
    state_lag: int


class Outcome:
    """One event of a batch: its numbers (None for a redelivered txn_id, already scored), its alert,
    and its `TransactionScore`, built on first use: the worker writes a batch's score records in bulk
    from the numbers (`stream.records`) and never needs the object (~2.3 µs an event to validate)."""

    __slots__ = ("_score", "alert", "degraded", "model_version", "numbers", "processed_at", "txn")

    def __init__(self, txn: Transaction, numbers: ScoreNumbers | None, alert: Alert | None = None,
                 model_version: str = "", degraded: bool = False,
                 processed_at: datetime | None = None) -> None:  # fmt: skip
        self.txn, self.numbers, self.alert = txn, numbers, alert
        self.model_version, self.degraded = model_version, degraded
        self.processed_at = processed_at or datetime.now(UTC)  # the engine gives its batch's one
        self._score: TransactionScore | None = None

    @property
    def duplicate(self) -> bool:
        return self.numbers is None

    @property
    def score(self) -> TransactionScore | None:
        if self.numbers is None:
            return None
        if self._score is None:
            txn, n = self.txn, self.numbers
            self._score = TransactionScore(
                txn_id=txn.txn_id, user_id=txn.user_id, event_time=txn.timestamp, score=n.score,
                deviation=n.deviation, deviation_log=n.deviation_log, surprise=n.surprise,
                model_version=self.model_version, degraded=self.degraded, alerted=n.alerted,
                state_lag=n.state_lag, processed_at=self.processed_at,
            )  # fmt: skip
        return self._score


class ScoringEngine:
    def __init__(
        self,
        live: LiveModel,
        scorer: Scorer,
        threshold: float,
        fallback: Scorer | None = None,
        *,
        reference: bool = False,
        retention_ms: int | None = None,
        inline_max: int = 0,
        max_lag: int = 0,
        cache_next: bool = True,
    ) -> None:
        self.live = live
        # False: a batch's encoder call leaves the next-event caches of the users it encoded to the
        # refresh behind the stream (the worker's `StateRefresher`), off the critical path
        self.cache_next = cache_next
        self.max_lag = max_lag  # events a score may lag its user's last refresh (0: exact; `score_cached`)
        self.inline_max = inline_max  # batches up to this many rows run on the loop's thread (`_call`)
        self.retention_ms = retention_ms  # a state idle longer than this (event time) is forgotten
        self.scorer = scorer
        self.threshold = threshold
        self.fallback = fallback
        self.reference = reference
        self.max_len = scorer.max_len
        self.signal_names = tuple(scorer.signal_names)
        self.encoder_rows = 0  # rows the critical-path encoder ran, over the engine's life (a metric)

    async def score(
        self,
        txns: list[Transaction],
        states: MutableMapping[str, UserState | bytes],
        profiles: Mapping[str, CachedProfile | None],
        *,
        stale_ok: frozenset[str] = frozenset(),
        in_place: bool = False,
        late: Mapping[str, Prediction] | None = None,
    ) -> list[Outcome]:
        """Scores `txns` in arrival order; `states` is updated only when the whole batch succeeded.

        `in_place=True` gives that guarantee up for speed: the `UserState`s given are updated as the
        batch goes, not copied first (copying was a quarter of a backtest's time). For a caller that
        stops at the first failed batch (the backtest); with a fallback scorer the copies stay, since
        the degraded retry must start from the states before the batch.

        A state may be given as its bytes (`UserState.to_bytes`, what the worker's table holds): it is
        decoded straight into the batch's working copy, so a state read from the store costs one decode
        and no copy. After success every touched user's entry is a `UserState`.

        Exact unless told otherwise: an event whose user's cached encoder state is not valid for it is
        encoded in the batch. Users in `stale_ok` (the worker's refresh is behind on them) are scored
        from their last cached state instead, and their scores carry `state_lag`. An engine made with
        `max_lag` > 0 scores every user from a cached state lagging at most that many events
        (`score_cached`; the worker's `PANTHER_MAX_STATE_LAG`, the backtest stays exact); `late`: the
        refresh's predictions for users a later batch had written meanwhile (`StateRefresher.take_late`).

        Raises ScorerUnavailable when the primary scorer is down and there is no fallback.
        """
        if not txns:
            return []
        given = states
        tokens = self.live.transaction_tokens(txns).tolist()
        events = [self._event(txn, token, profiles.get(txn.user_id))
                  for txn, token in zip(txns, tokens, strict=True)]  # fmt: skip
        degraded = False
        states = self._unexpired(states, events)
        copy = not in_place or self.fallback is not None
        try:
            results, scratch = await self._run(self.scorer, events, states, stale_ok, copy, late)
        except ScorerUnavailable:
            if self.fallback is None:
                raise
            degraded = True
            results, scratch = await self._run(self.fallback, events, states, stale_ok, copy, late)
        given.update(scratch)
        now = datetime.now(UTC)  # one `processed_at` per batch: its outputs leave together
        return [self._outcome(txn, result, degraded, now) for txn, result in zip(txns, results, strict=True)]

    def _unexpired(self, states: Mapping[str, UserState | bytes],
                   events: list[LiveEvent]) -> Mapping[str, UserState | bytes]:  # fmt: skip
        """`states` without those idle for longer than the retention before their user's first event
        here: such a user starts afresh, the same in the live worker (whatever its sweep has deleted
        yet) and in the backtest, because the rule reads only the user's own event times."""
        if self.retention_ms is None:
            return states
        first: dict[str, int] = {}
        for event in events:
            first.setdefault(event.user_id, event.txn.time_ms)
        retention = self.retention_ms
        expired = {user for user, t in first.items()
                   if user in states and t - UserState.last_time_of(states[user]) > retention}  # fmt: skip
        return {u: s for u, s in states.items() if u not in expired} if expired else states

    async def refresh(
        self, states: Mapping[str, UserState], profiles: Mapping[str, CachedProfile | None]
    ) -> int:
        """Make each given user's cached encoder state valid for their next event (in place): one
        batched encoder call for the stale ones. → rows encoded. Degrades like `score`.

        States still given as bytes (no event of the user was scored, e.g. only redeliveries) are left
        as they are."""
        states = {user: state for user, state in states.items() if isinstance(state, UserState)}
        if self.reference or not states:
            return 0
        ids = {user: self._profile_ids(profiles.get(user)) for user in states}
        for scorer in (self.scorer, self.fallback):
            if scorer is None:
                continue
            refresh_fn, _ = cached_calls(scorer, asyncio.get_running_loop())
            try:
                return await self._call(scorer, len(states), refresh_states, refresh_fn, self.max_len, states,
                                        ids, self.live.tags)  # fmt: skip
            except ScorerUnavailable:
                if scorer is self.fallback or self.fallback is None:
                    raise
        return 0

    def _profile_ids(self, cached: CachedProfile | None) -> np.ndarray:
        return cached.profile_ids if cached is not None else self.live.unknown_profile()

    def _event(self, txn: Transaction, token: int, cached: CachedProfile | None) -> LiveEvent:
        embedding = cached.embedding if cached is not None else None
        return LiveEvent(txn.user_id, record_view(txn, token), self._profile_ids(cached), embedding)

    async def _run(
        self, scorer: Scorer, events: list[LiveEvent], states: Mapping[str, UserState | bytes],
        stale_ok: frozenset[str], copy: bool = True, late: Mapping[str, Prediction] | None = None,
    ) -> tuple[list[LiveResult], dict[str, UserState]]:  # fmt: skip
        users = {e.user_id for e in events} & states.keys()
        scratch = {user: working_state(states[user], copy) for user in users}
        loop = asyncio.get_running_loop()
        if self.reference:
            score_fn = reference_score_fn(scorer, loop, self.threshold)
            results = await asyncio.to_thread(
                score_events, score_fn, self.live.features, self.max_len, scratch, events,
                model_tag=self.live.tags.encoder,
            )  # fmt: skip
            return results, scratch
        refresh_fn, head_fn = cached_calls(scorer, loop)
        live = self.live
        batch = await self._call(
            scorer, len(events), score_cached, refresh_fn, head_fn, live.next_token, live.features,
            self.max_len, scratch, events, live.tags, sequence_dim=scorer.sequence_dim,
            reason_threshold=self.threshold, stale_ok=stale_ok, max_lag=self.max_lag, late=late,
            cache_next=self.cache_next,
        )  # fmt: skip
        self.encoder_rows += batch.encoder_rows
        return batch.results, scratch

    async def _call(self, scorer: Scorer, rows: int, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn` on a worker thread, or right here on the loop's thread when the batch has at most
        `inline_max` rows and the scorer runs in this process. The hop to a thread and back cost
        0.2–1 ms a call at 10 events alone (`python bench/engine_hop.py`), and in the worker a
        small batch's `score` went from 5.5–9.7 to 1.7–5.1 ms (docs/BENCHMARKS.md); a large one
        still goes to a thread, so the loop keeps serving the commit's round trips meanwhile. A
        Triton scorer's calls block on this loop (`blocking_call`): always a thread."""
        if rows <= self.inline_max and in_process(scorer):
            return fn(*args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)

    def _outcome(self, txn: Transaction, result: LiveResult, degraded: bool, now: datetime) -> Outcome:
        if result.duplicate:
            return Outcome(txn, None)
        p_fraud = 0.0 if math.isnan(result.p_fraud) else float(result.p_fraud)
        alerted = p_fraud >= self.threshold
        numbers = ScoreNumbers(p_fraud, float(result.deviation), float(result.deviation_log),
                               float(result.surprise), alerted, int(result.state_lag))  # fmt: skip
        alert = None
        if alerted:
            alert = Alert(
                txn_id=txn.txn_id,
                user_id=txn.user_id,
                event_time=txn.timestamp,
                score=p_fraud,
                threshold=self.threshold,
                deviation=numbers.deviation,
                deviation_log=numbers.deviation_log,
                reasons=self._reasons(result.reasons),
                model_version=self.live.model_version,
                degraded=degraded,
                processed_at=now,
            )
        return Outcome(txn, numbers, alert, self.live.model_version, degraded, now)

    def _reasons(self, contributions: np.ndarray | None) -> list[Reason]:
        if contributions is None or len(contributions) == 0:
            return []
        order = np.argsort(-np.asarray(contributions, dtype=np.float64))[:TOP_REASONS]
        return [
            Reason(signal=self.signal_names[i], contribution=round(float(contributions[i]), 6))
            for i in order
            if contributions[i] > 0
        ]


def in_process(scorer: Scorer) -> bool:
    """Does `scorer` answer on the calling thread (`refresh_sync` / `score_state_sync`)?"""
    return all(getattr(scorer, name, None) is not None for name in ("refresh_sync", "score_state_sync"))


def cached_calls(scorer: Scorer, loop: asyncio.AbstractEventLoop) -> tuple[CallFn, CallFn]:
    """(refresh_fn, head_fn) for `score_cached` on its worker thread: an in-process scorer right on
    that thread, any other (Triton) through the event loop `loop`."""
    if in_process(scorer):
        refresh_sync, head_sync = scorer.refresh_sync, scorer.score_state_sync  # type: ignore[attr-defined]
    else:
        refresh_sync = blocking_call(scorer.refresh, loop)
        head_sync = blocking_call(scorer.score_state, loop)

    def refresh_fn(**arrays: np.ndarray) -> dict[str, np.ndarray]:
        return refresh_sync(RefreshRequest(**arrays)).to_dict()

    def head_fn(**arrays: np.ndarray) -> dict[str, np.ndarray]:
        return head_sync(StateScoreRequest.from_arrays(**arrays)).to_dict()

    return refresh_fn, head_fn


def reference_score_fn(scorer: Scorer, loop: asyncio.AbstractEventLoop, threshold: float) -> ScoreFn:
    """What the full-window `score_events` calls (on its worker thread) once per round.

    A scorer with `score_sync` (in-process) is called right on that thread, without two hops
    through the event loop, and without reasons; reasons (integrated gradients, ~45% of the
    model's time) are computed in a second call for the rows that alert, the only ones that
    carry them. Other scorers (Triton) go through the loop and return reasons with every row.
    """
    sync = getattr(scorer, "score_sync", None)
    if sync is None:
        return blocking_score_fn(scorer, loop)
    width = len(scorer.signal_names)

    def score_fn(reasons: bool = True, **arrays: np.ndarray) -> dict[str, np.ndarray]:
        request = ScoreRequest.from_arrays(**arrays)
        out = sync(request, reasons=False).to_dict()
        if reasons and "p_fraud" in out:
            rows = np.flatnonzero(out["p_fraud"] >= threshold)
            contributions = np.zeros((request.size, width), dtype=np.float32)
            if rows.size:
                alerting = ScoreRequest(**{k: v[rows] for k, v in request.arrays().items()})
                contributions[rows] = sync(alerting, reasons=True).reasons
            out["reasons"] = contributions
        return out

    return score_fn


def working_state(state: UserState | bytes, copy: bool = True) -> UserState:
    """The state to score a batch on: bytes decode straight into it (a deep copy of a decoded state
    cost 2.5x a decode, and was 15% of the worker's time at full speed); a decoded state is copied,
    or with `copy=False` (`score(..., in_place=True)`) used as it is."""
    if isinstance(state, bytes | bytearray):
        return UserState.from_bytes(state)
    return state.copy() if copy else state


def now_ms() -> int:
    return int(time.time() * 1000)
