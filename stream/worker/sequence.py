"""Every partition's records reach the engine in offset order, none skipped: Faust can drop some.

Seen on faust-streaming 0.15.3 (tests/stream/test_worker.py, a worker restarted after SIGTERM): two
records fetched around the seek that ends table recovery never reached the agent, and the next batch
began after them. Scoring on would be wrong twice: the records are lost (or, read again later, folded
into their users' states after newer events — not what an uninterrupted run computes).

So before a batch is scored, each partition's events must continue exactly where the last batch of
that partition ended (`expected`). A jump over offsets is accepted only when it holds no record: the
partition was read again from `expected` and the first record that came back is the same one
(transaction markers and aborted records occupy offsets, and a read_committed consumer never sees
them). Otherwise the partition is sought back to `expected` and its events are left out of the batch
(never committable — see `transactions.py`); they come again, in order, after the seek. Copies still
buffered from before the seek are recognised and left out too.

Faust's own bookkeeping cannot be the judge (read in faust/transport/consumer.py, `_drain_messages`):
it drops a fetched record whose offset is below the partition's *read offset*, and records a gap when
one is above it by more than one. A seek resets the read offset while records fetched before the seek
are still being handed over, so those stale records push it up again: the re-read records are then
dropped (the partition stalls behind them) and the range between is recorded as a gap (which Faust
then treats as done). `keep_every_record` switches that filter off for the agents' topics; this
module does its job instead.

Expectations start from the consumer's committed offsets and are reset when the consumer generation
changes (a rebalance seeks every partition to its committed offset).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)
_TAKE, _SKIP, _STOP = object(), object(), object()


@dataclass(frozen=True)
class Probe:
    expected: int  # where the partition was sought back to
    first_seen: int  # the offset that came instead: if it comes again after the seek, nothing is between


class PartitionSequencer:
    def __init__(
        self,
        committed: Callable[[Any], int | None],
        seek: Callable[[Any, int], Awaitable[None]],
    ) -> None:
        self.committed = committed  # tp → the consumer's committed offset (next to read), or None
        self.seek = seek
        self.expected: dict[Any, int] = {}
        self.probes: dict[Any, Probe] = {}
        self.generation: Any = None
        self.seeks = 0  # a metric: partitions read again

    async def admit(self, events: list[Any], generation: Any = None) -> list[Any]:
        """The events to score now, in their batch order (the rest will come again)."""
        if generation != self.generation:
            self.generation = generation
            self.expected.clear()
            self.probes.clear()
        by_tp: dict[Any, list[Any]] = {}
        for event in events:
            by_tp.setdefault(event.message.tp, []).append(event)
        admitted: set[int] = set()
        for tp, tp_events in by_tp.items():
            for event in sorted(tp_events, key=lambda e: e.message.offset):
                verdict = await self._admit_one(tp, event.message.offset)
                if verdict is _STOP:
                    break
                if verdict is _TAKE:
                    admitted.add(id(event))
        return [e for e in events if id(e) in admitted]

    async def _admit_one(self, tp: Any, offset: int) -> object:
        """_TAKE it, _SKIP it (a copy), or _STOP: the partition's later events wait for a re-read."""
        expected = self.expected.get(tp)
        if expected is None:
            expected = self.committed(tp)
        if expected is None or offset == expected:
            return self._take(tp, offset)
        if offset < expected:
            return _SKIP  # a copy of a record already scored (read again after a seek)
        probe = self.probes.get(tp)
        if probe is not None and probe.expected == expected:
            # sought back already: the record at `expected` or, if none is there, the same first one
            return self._take(tp, offset) if offset == probe.first_seen else _STOP
        self.probes[tp] = Probe(expected, offset)
        self.seeks += 1
        log.warning("partition %s: offset %d came where %d was expected (records dropped on the way in,"
                    " or transaction markers): reading the partition again from %d", tp, offset, expected,
                    expected)  # fmt: skip
        await self.seek(tp, expected)
        return _STOP

    def rewind(self, events: list[Any]) -> None:
        """`events` were admitted but not written: expect each partition's first of them again."""
        for event in sorted(events, key=lambda e: e.message.offset, reverse=True):
            tp, offset = event.message.tp, event.message.offset
            if self.expected.get(tp, offset) > offset:
                self.expected[tp] = offset
                self.probes.pop(tp, None)

    def _take(self, tp: Any, offset: int) -> object:
        self.expected[tp] = offset + 1
        self.probes.pop(tp, None)
        return _TAKE


class EveryRecord(defaultdict):  # type: ignore[type-arg]
    """Faust's consumer `_read_offset` (tp → last offset handed over), blind for `topics` (see above)."""

    def __init__(self, topics: Iterable[str]) -> None:
        super().__init__(lambda: None)
        self.topics = frozenset(topics)

    def __getitem__(self, tp: Any) -> Any:
        return None if tp.topic in self.topics else super().__getitem__(tp)


def keep_every_record(consumer: Any, topics: Iterable[str]) -> None:
    """Hand every fetched record of `topics` to the streams; call before the consumer starts fetching
    (its fetch loop binds the mapping's methods when it starts). Idempotent: both agents call it."""
    current = consumer._read_offset
    if isinstance(current, EveryRecord):
        current.topics |= frozenset(topics)
        return
    replacement = EveryRecord(topics)
    replacement.update(current)
    consumer._read_offset = replacement
