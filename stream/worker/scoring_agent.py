"""The scoring agent: micro-batches of `transactions` → DLQ / scores / alerts, state in `user_windows`.

The per-event path, in order: a natural micro-batch (`batches.py`: whatever arrived meanwhile) →
decode (`decode.py`: valid records, dead letters with reasons) → state (`user_windows`, RocksDB; the
states this worker wrote, still decoded: `state_memo.py`) →
score from each user's cached encoder state (`stream.engine` → `models.fraud.cached_scoring`: one head
call, the encoder only for windows without a valid cache) → outputs (scores, alerts, dead letters) →
commit (`transactions.py`: one Kafka transaction per batch under exactly_once; outputs acknowledged
before the state under at_least_once). The users a batch left stale are then refreshed behind the
stream (`refresh.py`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np

from models.fraud.state import UserState
from stream.engine import CachedProfile, ProfileDecoder, ScoringEngine, now_ms
from stream.events import Transaction
from stream.records import score_records
from stream.scoring import ScorerUnavailable
from stream.worker.batch_agent import BatchAgent
from stream.worker.decode import dead_letter_outputs, decode_events
from stream.worker.refresh import BatchPlan, StateRefresher, stale_states
from stream.worker.retention import RetentionSweep
from stream.worker.state_memo import StateMemo
from stream.worker.tables import read_value, write_values
from stream.worker.transactions import Output

MAX_BACKOFF_S = 10.0
PAUSE_POLL_S = 0.1  # how soon a held batch notices a rebalance


class ScoringAgent(BatchAgent):
    topic_role, agent_name = "transactions", "score-transactions"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)

        assignment: tuple[Any, frozenset[Any]] = (None, frozenset())

        def owned(source: Any) -> bool:
            """Is the source's partition still ours? The assignment (a set Faust builds anew on each
            call, 3 % of the GIL at full speed) is kept per rebalance, and read afresh during one."""
            nonlocal assignment
            app = self.app
            if app.rebalancing:
                return source.message.tp in app.consumer.assignment()
            key = (app.rebalancing_count, app.consumer_generation_id)
            if assignment[0] != key:
                assignment = (key, frozenset(app.consumer.assignment()))
            return source.message.tp in assignment[1]

        def refreshed(rows: int, seconds: float) -> None:
            self.metrics.refresh_rows.inc(rows)
            self.metrics.refresh_seconds.observe(seconds)

        memo_max = self.settings.state_memo_max
        self.memo = StateMemo(memo_max) if memo_max and self.engine.fallback is None else None
        self.refresher = StateRefresher(self.engine, self.settings.refresh_backlog,
                                        self.settings.refresh_batch_max, owned, refreshed,
                                        lambda: self.app.consumer_generation_id,
                                        self.memo.refreshed if self.memo is not None else None)  # fmt: skip
        self.decode_profile = ProfileDecoder()
        self.sweep = RetentionSweep(self.settings.state_retention_ms, self.settings.state_sweep_keys,
                                    self.settings.state_sweep_interval_s)  # fmt: skip

    async def run(self, stream: Any) -> None:
        try:
            await super().run(stream)
        finally:
            await self.refresher.close()  # a refresh in flight is dropped: recomputed when next needed

    async def process(self, events: list[Any]) -> None:
        """Decode and score (nothing written yet), then write state and outputs as one transaction."""
        batch_started = started = time.perf_counter()
        if self.memo is not None:
            self.memo.end_batch()  # what an earlier batch lent and did not keep (it was dropped)
        spent = dict.fromkeys(("decode", "settle", "load", "score", "outputs"), 0.0)  # one observation each

        def lap(name: str) -> None:
            nonlocal started
            now = time.perf_counter()
            spent[name] += now - started
            started = now

        decoded = decode_events(events, Transaction, self.channels.transactions.get_topic_name(),
                                self.settings.max_message_bytes)  # fmt: skip
        source = {txn.user_id: event for event, txn in decoded.valid}  # a user's events share a partition
        txns = [txn for _, txn in decoded.valid]
        newest: dict[int, datetime] = {}
        for event, txn in decoded.valid:
            partition = event.message.partition
            if partition not in newest or txn.timestamp > newest[partition]:
                newest[partition] = txn.timestamp
        for partition, stamp in newest.items():
            self.sweep.observe(partition, round(stamp.timestamp() * 1000))
        lap("decode")
        plan = self.refresher.prepare(source)
        profiles = self._load_profiles(source)
        refreshed = await self._refresh_stale(profiles)
        states = self._load_states({u: e for u, e in source.items() if u not in plan.waiting})
        lap("load")
        rows_before = self.engine.encoder_rows
        outcomes, states = await self._score_batch(txns, source, plan, states, profiles, events, lap)
        self.metrics.encoder_rows.inc(self.engine.encoder_rows - rows_before)
        behind = self.refresher.drain_ready()  # refreshed caches of other users: persisted with this batch
        outputs = dead_letter_outputs(self.channels.dlq.get_topic_name(), decoded.dead)
        outputs += self._outputs(decoded.valid, outcomes)
        lap("outputs")
        for name, seconds in spent.items():
            self.metrics.phase_seconds.labels(name).observe(seconds)

        packed: dict[str, bytes] = {}  # the states as written: the refresh behind splices their tails

        async def write() -> list[Output]:
            windows, embeddings, wal = self.tables.user_windows, self.tables.user_embeddings, self.tables.wal
            changelog = write_values(embeddings, [(source[user_id], user_id.encode(), cached.to_bytes())
                                                  for user_id, cached in refreshed.items()],
                                     wal=wal)  # fmt: skip
            packed.update((user_id, state.to_bytes()) for user_id, state in states.items()
                          if isinstance(state, UserState))  # bytes: only duplicates of the user  # fmt: skip
            changelog += write_values(windows, [
                *((source[user_id], user_id.encode(), raw) for user_id, raw in packed.items()),
                *((event, user_id.encode(), raw) for user_id, event, raw in behind if user_id not in source),
            ], wal=wal)  # fmt: skip
            # The batch's own users are spared; a refreshed state written behind them is not: it is
            # only a cache, and a user idle past the retention goes, its pending refresh with it.
            busy = {user_id.encode() for user_id in source}
            partitions = {event.message.partition: event for event in events}.values()
            deleted = self.sweep.deleted
            evicted = self.sweep.deletions(windows, embeddings, partitions, busy)
            self.metrics.evicted.inc(self.sweep.deleted - deleted)
            gone = windows.changelog_topic.get_topic_name()
            self.refresher.written({out.key.decode() for out in evicted if out.topic == gone and out.key})
            return changelog + evicted

        def refresh_behind() -> None:
            """Serialized and sent: the refresh may now run beside the commit's round trips."""
            written = [user_id for user_id, state in states.items() if isinstance(state, UserState)]
            stale = stale_states(self.engine, {u: states[u] for u in written}, profiles, source, packed)
            self.refresher.written(written, stale, self.generation)
            if self.memo is not None:  # the stale ones too: their refresh works on a view of its own
                for user_id in written:
                    self.memo.keep(user_id, packed[user_id], states[user_id])  # type: ignore[arg-type]

        started = time.perf_counter()
        await self.committer.commit_batch(events, write, outputs, self.generation, on_written=refresh_behind)
        self.metrics.commit_seconds.observe(time.perf_counter() - started)
        self.metrics.refresh_backlog.set(self.refresher.backlog)
        self.metrics.batch_size.observe(len(events))
        self.metrics.batch_seconds.observe(time.perf_counter() - batch_started)
        self.metrics.events.labels("dead_letter").inc(len(decoded.dead))

    async def _score_batch(self, txns: list[Transaction], source: dict[str, Any], plan: BatchPlan,
                           states: dict[str, UserState | bytes], profiles: dict[str, CachedProfile | None],
                           events: list[Any], lap: Callable[[str], None],
                           ) -> tuple[list[Any], dict[str, UserState | bytes]]:  # fmt: skip
        """→ the batch's outcomes, in its order, and every scored user's new state. `states`: those of
        the users not being refreshed right now, who are scored first, while that refresh runs beside
        them; the others (`plan.waiting`) once it has finished, from their refreshed states."""

        async def score(part: list[Transaction], given: dict[str, UserState | bytes]) -> list[Any]:
            return [] if not part else await self._score_with_backoff(part, given, profiles, plan, events)

        started = time.perf_counter()
        if not plan.waiting:
            outcomes = await score(txns, states)
            self.metrics.score_seconds.observe(time.perf_counter() - started)
            lap("score")
            return outcomes, states
        outcomes = await score([txn for txn in txns if txn.user_id not in plan.waiting], states)
        seconds = time.perf_counter() - started
        lap("score")
        await self.refresher.wait_for(plan.waiting)
        lap("settle")
        started = time.perf_counter()
        later = self._load_states({u: source[u] for u in plan.waiting})
        second = [txn for txn in txns if txn.user_id in plan.waiting]
        outcomes = _in_order(txns, outcomes, await score(second, later), plan.waiting)
        states.update(later)  # after scoring: the engine put their new states in `later`
        self.metrics.score_seconds.observe(seconds + time.perf_counter() - started)
        lap("score")
        return outcomes, states

    def _outputs(self, valid: list[tuple[Any, Transaction]], outcomes: list[Any]) -> list[Output]:
        """The batch's scores and alerts, each on its input's partition (the score records encoded in
        bulk: `stream.records`); metrics counted here, once per batch where a count will do."""
        scores, alerts = self.channels.scores.get_topic_name(), self.channels.alerts.get_topic_name()
        scored = [(event, outcome) for (event, _), outcome in zip(valid, outcomes, strict=True)
                  if not outcome.duplicate]  # fmt: skip
        records = score_records([outcome for _, outcome in scored])
        out: list[Output] = []
        now = time.time()
        observe = self.metrics.lag_seconds.observe
        degraded = lagged = alerted = 0
        for (event, outcome), record in zip(scored, records, strict=True):
            key = outcome.txn.user_id.encode()
            out.append(Output(event, scores, key, record))
            degraded += outcome.degraded
            lagged += outcome.numbers.state_lag > 0
            if outcome.alert is not None:
                out.append(Output(event, alerts, key, outcome.alert.to_json_bytes()))
                alerted += 1
            observe(max(now - event.message.timestamp, 0.0))
        metrics = self.metrics
        metrics.events.labels("duplicate").inc(len(valid) - len(scored))
        metrics.events.labels("scored").inc(len(scored))
        metrics.degraded.inc(degraded)
        metrics.lagged.inc(lagged)
        metrics.alerts.inc(alerted)
        return out

    def _load_states(self, source: dict[str, Any]) -> dict[str, UserState | bytes]:
        """The stored bytes (a refreshed state not yet persisted is newer than the table's): the engine
        decodes them into its working copy (no decode + copy here)."""
        states: dict[str, UserState | bytes] = dict(self.refresher.take_ready(source))
        for user_id in source.keys() - states.keys():
            raw = read_value(self.tables.user_windows, source[user_id], user_id.encode())
            if raw is not None:
                states[user_id] = raw
        if self.memo is not None:
            hits = self.memo.lend(states)  # the states this worker wrote as these very bytes, decoded
            self.metrics.state_memo.labels("hit").inc(hits)
            self.metrics.state_memo.labels("miss").inc(len(states) - hits)
        return states

    def _load_profiles(self, source: dict[str, Any]) -> dict[str, CachedProfile | None]:
        profiles: dict[str, CachedProfile | None] = {}
        for user_id, event in source.items():
            raw = read_value(self.tables.user_embeddings, event, user_id.encode())
            profiles[user_id] = self.decode_profile(raw) if raw is not None else None
        return profiles

    async def _refresh_stale(self, profiles: dict[str, CachedProfile | None]) -> dict[str, CachedProfile]:
        """Embeddings older than the TTL or made by another model version are recomputed in one call.

        Returns the refreshed entries (written to `user_embeddings` with the batch) and updates
        `profiles` in place. A user with no cached profile is scored with "all fields missing" ids (the
        scorer embeds them on the fly); the profile agent fills the cache when the profile arrives.
        """
        stale = [
            user_id
            for user_id, cached in profiles.items()
            if cached is not None and not cached_is_fresh(cached, self.engine, self.settings.embedding_ttl_s)
        ]
        if not stale:
            return {}
        ids = np.stack([profiles[user_id].profile_ids for user_id in stale])  # type: ignore[union-attr]
        try:
            embeddings = await self.engine.scorer.embed_users(ids)
        except ScorerUnavailable:
            return {}  # keep the old embedding; refresh on a later batch
        stamp = now_ms()
        refreshed = {
            user_id: CachedProfile(row, embedding, self.engine.live.model_version, stamp)
            for user_id, row, embedding in zip(stale, ids, embeddings, strict=True)
        }
        profiles.update(refreshed)
        return refreshed

    async def _score_with_backoff(self, txns: list[Transaction], states: dict[str, UserState | bytes],
                                  profiles: dict[str, CachedProfile | None], plan: BatchPlan,
                                  events: list[Any]) -> list[Any]:  # fmt: skip
        """Degraded mode "pause": hold the batch (nothing acked, nothing lost) and retry with backoff."""
        delay = 0.25
        memo = self.memo
        while True:
            try:  # in place: the states lent from the memo are this batch's to fold into
                outcomes = await self.engine.score(txns, states, profiles, stale_ok=plan.stale_ok,
                                                   in_place=memo is not None, late=plan.late)  # fmt: skip
                self.metrics.scorer_up.set(1)
                return outcomes
            except ScorerUnavailable as exc:
                if memo is not None:
                    memo.restore(states)  # some events may be folded into the lent states already
                self.metrics.scorer_up.set(0)
                self.app.log.warning("scorer unavailable (%s): pausing %.2fs", exc, delay)
                await self._pause(delay, events)
                delay = min(delay * 2, MAX_BACKOFF_S)

    async def _pause(self, seconds: float, events: list[Any]) -> None:
        """Sleep, but give the held batch up as soon as a rebalance starts (issue 15).

        A revocation waits for every fetched message to be acked (Faust's `wait_empty`), so a batch held
        through a scorer outage held the whole group's rebalance with it — the new member idle, and past
        the rebalance timeout this member fenced. The batch is unwritten: dropping it loses nothing
        (`BatchCommitter.drop`; the partitions' next owner, maybe this worker again, reads it again).
        """
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if self.app.rebalancing or self.app.consumer_generation_id != self.generation:
                self.committer.drop(events, "a rebalance began while the batch waited for the scorer")
            await asyncio.sleep(min(remaining, PAUSE_POLL_S))


def _in_order(txns: list[Transaction], first: list[Any], second: list[Any],
              later: frozenset[str]) -> list[Any]:  # fmt: skip
    """The outcomes of a batch scored in two parts (`first`: the events of users not in `later`, in
    order; `second`: those of the users in `later`, in order), in the batch's order."""
    parts = iter(first), iter(second)
    return [next(parts[txn.user_id in later]) for txn in txns]


def cached_is_fresh(cached: CachedProfile | None, engine: ScoringEngine, ttl_s: float) -> bool:
    return cached is not None and cached.is_fresh(engine.live.model_version, ttl_s, now_ms())
