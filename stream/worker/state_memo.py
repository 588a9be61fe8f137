"""Decoded user states kept between batches, so a user's state is not decoded again on every event.

The worker reads each scored user's state bytes from its table (or from a refresh's ready state) and
the engine decoded them for every batch: `UserState.from_bytes` was ~10 % of the worker's GIL samples
at full speed (py-spy, docs/BENCHMARKS.md, issue 14), for a state this same process had just written.

The table stays the truth. An entry is (bytes, state): the state the worker wrote as those bytes, or
refreshed into them. It is used only when the bytes just read for the user are equal to the entry's —
a state written meanwhile by another worker (a rebalance), restored from the changelog, swept by the
retention or never written (a failed or dropped batch) misses, and is decoded from the bytes as before.

An entry's state object has one holder at a time. `lend` takes it out for a batch, whose engine then
folds the batch's events into it in place (`ScoringEngine.score(in_place=True)`: no decode, no copy);
it comes back only through `keep`, with the bytes the batch wrote for it. A user whose cache the
refresh will make is kept too: the refresh works on a view of its own (`UserState.refresh_view`), and
when it has finished, an entry still holding the bytes it refreshed takes its prediction and the
refreshed bytes (`refreshed`, on the event loop, so never while a batch holds the object). (A first
version kept such a user only once its refresh had finished: under a lag bound, where a busy user's
next batch does not wait for that, its state was decoded from its bytes on nearly every batch.)
Before a retry (the scorer was unavailable mid-batch), the lent objects — some events may be folded
already — are replaced by their bytes (`restore`).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from models.fraud.state import UserState


class StateMemo:
    """At most `max_entries` decoded states, the least recently kept dropped first."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: dict[str, tuple[bytes, UserState]] = {}
        self._lent: dict[str, bytes] = {}  # user → the bytes its lent object was lent for

    def __len__(self) -> int:
        return len(self._entries)

    def lend(self, states: MutableMapping[str, Any]) -> int:
        """In `states` (user → the bytes read for them), each user's bytes → the decoded state kept for
        exactly those bytes, taken out of the memo. Entries of the other given users are dropped.
        → how many were lent (the rest are decoded from their bytes)."""
        entries, lent = self._entries, self._lent
        hits = 0
        for user, raw in states.items():
            entry = entries.pop(user, None)
            if entry is not None and isinstance(raw, bytes) and entry[0] == raw:
                states[user] = entry[1]
                lent[user] = raw
                hits += 1
        return hits

    def restore(self, states: MutableMapping[str, Any]) -> None:
        """Before scoring a batch again: every state lent into `states` back to its bytes."""
        for user, raw in self._lent.items():
            if isinstance(states.get(user), UserState):
                states[user] = raw
        self._lent.clear()

    def keep(self, user: str, raw: bytes, state: UserState) -> None:
        """`state` is what `raw` decodes to, and the caller no longer holds it."""
        self._lent.pop(user, None)
        entries = self._entries
        entries.pop(user, None)
        entries[user] = (raw, state)
        if len(entries) > self.max_entries:
            del entries[next(iter(entries))]

    def refreshed(self, user: str, before: bytes | None, raw: bytes, refreshed: UserState) -> None:
        """A refresh of the state written as `before` made `raw` (the same state with the prediction
        of `refreshed`, its view): the entry, if it still holds `before`, now holds `raw`."""
        entry = self._entries.get(user)
        if entry is None or before is None or entry[0] != before:
            return  # lent to a batch, written again since, or never kept
        state = entry[1]
        state.prediction, state.model_tag = refreshed.prediction, refreshed.model_tag
        self._entries[user] = (raw, state)

    def end_batch(self) -> None:
        """Lent states not kept (a batch dropped or failed) are let go: their bytes decode them again."""
        self._lent.clear()
