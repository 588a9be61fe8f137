"""The encoder refresh behind the worker's batches: off the critical path, bounded, written behind.

Once a batch's states are serialized and its records sent — before its commit's broker round trips,
which the refresh overlaps; from there the batch commits or the worker stops — the users it left
with a stale cached encoder state are queued here; one background task at a time refreshes up to
`batch_max` of them in one batched encoder call (`ScoringEngine.refresh`), and keeps the refreshed
states *ready*: the next batch reads a ready user from here instead of the table, and writes every
ready state (with its fresh cache) to the table in its own transaction, so the cache survives a restart.

Before a batch is scored (`prepare`, then `wait_for`):
- normally (backlog ≤ `backlog_max`): a batch user still in the queue is taken out of it — the batch
  encodes that user itself, once — and the users being refreshed right now wait for that call to
  finish (it is already running: waiting costs less than encoding them again). The batch scores its
  other users first, while the refresh runs beside it (torch releases the GIL), then those;
- overloaded (backlog > `backlog_max`): nothing waits; those users are scored from their last refresh
  and their scores carry `state_lag`. The stream never waits on a backlog and never drops an event.

With a lag bound (the engine's `max_lag` > 0, `PANTHER_MAX_STATE_LAG`) nothing waits and nothing
leaves the queue: the engine scores each user from its last refresh while that lags at most `max_lag`
events (beyond it, the batch encodes the user itself, also past `backlog_max`: the bound is never
exceeded, unlike the unbounded overload mode above), so the encoder is off the critical path whatever
its speed, and a user keeps its place in the queue while its events go on arriving (sent to the back
on each write, a busy user would wait longest).

A state written by a later batch supersedes a refresh of an older one: its bytes are not used. Under a
lag bound its prediction is kept (`take_late`) — made after more events than the newer state's own, it
lags less — and the user's next batch adopts it. A failed refresh is dropped: the batch that next sees
the user encodes it (exact either way).
Entries of partitions this worker no longer owns are dropped before use, and so are those of an
earlier consumer generation: a partition revoked and later given back may have been written by
another worker meanwhile, so a state refreshed here before is no longer its newest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.fraud.state import Prediction, UserState, profile_tag
from stream.engine import CachedProfile, ScoringEngine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchPlan:
    stale_ok: frozenset[str]  # scored from their last refresh, with state_lag (overload)
    waiting: frozenset[str]  # being refreshed right now: scored once that call has finished
    late: dict[str, Prediction] = field(default_factory=dict)  # superseded refreshes' predictions


@dataclass
class Pending:
    source: Any  # an event of the user: its partition is where the state is written
    state: UserState | bytes  # the state to refresh (UserState), or refreshed and ready (bytes)
    profile: CachedProfile | None
    written: bytes | None = None  # the state's bytes as its batch wrote them: the refresh splices its tail
    generation: Any = None  # the consumer generation its batch was written in (`submit`)


class StateRefresher:
    def __init__(
        self,
        engine: ScoringEngine,
        backlog_max: int,
        batch_max: int,
        owned: Callable[[Any], bool],
        on_refreshed: Callable[[int, float], None] | None = None,
        generation: Callable[[], Any] = lambda: None,
        on_ready: Callable[[str, bytes | None, bytes, UserState], None] | None = None,
    ) -> None:
        self.engine = engine  # its `max_lag`: the lag bound (0: exact)
        self.on_ready = on_ready  # (user, bytes before, ready bytes, the state refreshed): the state memo
        self.backlog_max = backlog_max
        self.batch_max = batch_max
        self.owned = owned  # is this source event's partition still ours?
        self.generation = generation  # the consumer generation now
        self.on_refreshed = on_refreshed  # (rows, seconds) after each refresh call: metrics
        self.queue: dict[str, Pending] = {}
        self.running: dict[str, Pending] = {}
        self.ready: dict[str, Pending] = {}
        self._superseded: set[str] = set()
        self._late: dict[str, Pending] = {}  # superseded refreshes' predictions (in `state`), lag bound only
        self._task: asyncio.Task[None] | None = None

    @property
    def backlog(self) -> int:
        """Users waiting for a refresh (queued or being refreshed)."""
        return len(self.queue) + len(self.running)

    def prepare(self, users: Iterable[str]) -> BatchPlan:
        """Without waiting: take the batch's queued users out of the queue (it encodes them itself) and
        say which must be scored from their last refresh (overload) and which are being refreshed now
        (`waiting`: the batch scores the others first, then waits for those: `wait_for`). Under a lag
        bound: nothing of that — the plan carries the bound and the superseded refreshes' predictions."""
        users = set(users)
        if self.engine.max_lag:  # nothing waits; the bound holds even past `backlog_max`
            return BatchPlan(frozenset(), frozenset(), self.take_late(users))
        if self.backlog > self.backlog_max:
            return BatchPlan(frozenset(u for u in users if u in self.queue or u in self.running), frozenset())
        for user in users & self.queue.keys():
            del self.queue[user]
        return BatchPlan(frozenset(), frozenset(users & self.running.keys() - self._superseded))

    async def wait_for(self, users: Iterable[str]) -> None:
        """Until none of `users` is being refreshed (their refreshed states are then ready)."""
        users = set(users)
        while self._task is not None and users & self.running.keys():
            await asyncio.shield(self._task)

    def take_ready(self, users: Iterable[str]) -> dict[str, bytes]:
        """The refreshed states of `users` (newer than the table's): the batch reads and rewrites them."""
        out: dict[str, bytes] = {}
        for user in users:
            entry = self.ready.pop(user, None)
            if entry is not None and self._ours(entry):
                out[user] = entry.state  # type: ignore[assignment]
        return out

    def drain_ready(self) -> list[tuple[str, Any, bytes]]:
        """(user, source, state bytes) of every ready state still ours: written with the next batch."""
        out = [(user, e.source, e.state) for user, e in self.ready.items() if self._ours(e)]
        self.ready.clear()
        return out  # type: ignore[return-value]

    def take_late(self, users: Iterable[str]) -> dict[str, Prediction]:
        """The predictions of superseded refreshes of `users` still ours (lag bound only): each newer
        than the prediction its user's written state carries."""
        out: dict[str, Prediction] = {}
        for user in users:
            entry = self._late.pop(user, None) if self._late else None
            if entry is not None and self._ours(entry):
                out[user] = entry.state.prediction  # type: ignore[union-attr]
        return out

    def written(self, users: Iterable[str], stale: dict[str, Pending] | None = None,
                generation: Any = None) -> None:  # fmt: skip
        """A batch wrote these users' states: older queued, running or ready entries are obsolete.
        `stale`: those of them whose new state needs a refresh, queued (`submit`) in the place of
        their earlier queued entry, if any, so a user with an event in every batch is not sent to the
        back of the queue each time."""
        stale = stale or {}
        for user in users:
            if user not in stale:
                self.queue.pop(user, None)
            self.ready.pop(user, None)
            if user in self.running:
                self._superseded.add(user)
        if stale:
            self.submit(stale, generation)

    def submit(self, entries: dict[str, Pending], generation: Any = None) -> None:
        """Queue users whose written state has a stale cache (call after `written`); `generation`: the
        consumer generation their batch was written in."""
        for entry in entries.values():
            entry.generation = generation
        self.queue.update(entries)  # a user already queued keeps its place
        self._kick()

    def _ours(self, entry: Pending) -> bool:
        """Still this worker's newest state of the user: same generation, partition still assigned."""
        return entry.generation == self.generation() and self.owned(entry.source)

    def _kick(self) -> None:
        task = self._task
        running = task is not None and not task.done() and task is not asyncio.current_task()
        if running or not self.queue:  # (from its own `finally` the task is not done yet: it chains)
            return
        users = list(self.queue)[: self.batch_max]
        self.running = {user: self.queue.pop(user) for user in users}
        self._superseded.clear()
        self._task = asyncio.ensure_future(self._refresh())

    async def _refresh(self) -> None:
        running = {u: e for u, e in self.running.items() if self._ours(e)}
        try:
            started = time.perf_counter()
            states = {u: e.state for u, e in running.items()}
            rows = await self.engine.refresh(states, {u: e.profile for u, e in running.items()})  # type: ignore[arg-type]
            if self.on_refreshed is not None:
                self.on_refreshed(rows, time.perf_counter() - started)
            for user, entry in running.items():
                if user in self._superseded:
                    if self.engine.max_lag and isinstance(entry.state, UserState) and entry.state.prediction:
                        self._keep_late(user, entry)
                else:
                    state: UserState = entry.state  # type: ignore[assignment]
                    before = entry.written
                    raw = state.to_bytes() if before is None else state.to_bytes_after_refresh(before)
                    self.ready[user] = Pending(entry.source, raw, entry.profile, generation=entry.generation)
                    if self.on_ready is not None:
                        self.on_ready(user, before, raw, state)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the next batch that sees these users encodes them: nothing is lost
            log.warning("state refresh of %d users failed (%s: %s); they are encoded when next seen",
                        len(running), type(exc).__name__, exc)  # fmt: skip
        finally:
            self.running = {}
            self._kick()

    def _keep_late(self, user: str, entry: Pending) -> None:
        """Bounded like the backlog: a user that never comes back leaves its entry to be evicted."""
        self._late.pop(user, None)
        self._late[user] = entry
        if len(self._late) > max(self.backlog_max, 1):
            del self._late[next(iter(self._late))]

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def stale_states(engine: ScoringEngine, states: dict[str, Any], profiles: dict[str, CachedProfile | None],
                 sources: dict[str, Any],
                 written: dict[str, bytes] | None = None) -> dict[str, Pending]:  # fmt: skip
    """The batch's written users whose cache is not valid for their next event (`written`: the bytes
    the batch wrote for them, which the refresh then only re-tails — and then it refreshes a view of
    the state (`UserState.refresh_view`), not the state itself, which the caller may keep using)."""
    tags = engine.live.tags
    out: dict[str, Pending] = {}
    for user, state in states.items():
        if not isinstance(state, UserState):
            continue
        cached = profiles.get(user)
        ids = cached.profile_ids if cached is not None else engine.live.unknown_profile()
        if state.valid_prediction(tags.prediction, profile_tag(np.asarray(ids))) is None:
            raw = None if written is None else written.get(user)
            view = state if raw is None else state.refresh_view(engine.max_len)
            out[user] = Pending(sources[user], view, cached, raw)
    return out
