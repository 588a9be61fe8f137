"""Every partition's records reach the engine in offset order, none skipped: Faust can drop some.

Seen on faust-streaming 0.15.3 (tests/stream/test_worker.py, a worker restarted after SIGTERM): two
records fetched around the seek that ends table recovery never reached the agent, and the next batch
began after them. Scoring on would be wrong twice: the records are lost (or, read again later, folded
into their users' states after newer events — not what an uninterrupted run computes).

So before a batch is scored, each partition's events must continue exactly where the last batch of
that partition ended (`expected`). A jump over offsets is accepted when it holds no record: Faust
recorded it as a gap (transaction markers, compaction), or the partition was read again from
`expected` and the first record that came back is the same one. Otherwise the partition is sought back
to `expected` and its events are left out of the batch (unacked, so never committable — see
`transactions.py`); they come again, in order, after the seek. Copies still buffered from before the
seek are recognised and left out too.

Expectations start from the consumer's committed offsets and are reset when the consumer generation
changes (a rebalance seeks every partition to its committed offset).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
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
        is_gap: Callable[[Any, int, int], bool] = lambda tp, start, stop: False,
    ) -> None:
        self.committed = committed  # tp → the consumer's committed offset (next to read), or None
        self.seek = seek
        self.is_gap = is_gap  # (tp, start, stop): Faust knows [start, stop) holds no record
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
        if self.is_gap(tp, expected, offset):
            return self._take(tp, offset)
        self.probes[tp] = Probe(expected, offset)
        self.seeks += 1
        log.warning("partition %s: records %d..%d did not reach the worker (offset %d came instead):"
                    " reading the partition again from %d", tp, expected, offset - 1, offset, expected)
        await self.seek(tp, expected)
        return _STOP

    def _take(self, tp: Any, offset: int) -> object:
        self.expected[tp] = offset + 1
        self.probes.pop(tp, None)
        return _TAKE


def faust_gap(gaps: Mapping[Any, Any]) -> Callable[[Any, int, int], bool]:
    """`is_gap` from Faust's consumer `_gap` (tp → IntervalTree of offsets fetched over, end excluded)."""

    def is_gap(tp: Any, start: int, stop: int) -> bool:
        tree = gaps.get(tp)
        if not tree:
            return False
        reach = start
        for interval in sorted(tree.overlap(start, stop), key=lambda i: i.begin):
            if interval.begin > reach:
                return False
            reach = max(reach, interval.end)
        return reach >= stop

    return is_gap
