"""A partition fetched past what its agent has seen, while the agent sits idle, is read again.

Why (docs/RELIABILITY.md, "Open"): Faust can drop fetched records before they reach the agent's stream
without a trace. The sequencer (`sequence.py`) notices a drop when a later record of the partition
arrives; when the dropped records were the partition's last ones, nothing arrives, the consumer's fetch
position stays above the sequencer's expected offset and the partition stalls, owned and behind.

So every `every_s` the watch compares, for each partition the agent owns and Faust keeps active, the
consumer's fetch position with the offset the sequencer expects next (or the committed offset, or the
log start when nothing was ever committed and the reset policy is "earliest"); when the agent has had
no batch for `idle_s` and a position is above that offset, the partition is sought back to it. A seek
that was not needed costs only a re-read: the sequencer leaves out copies of records it has already
admitted, so nothing is scored twice. The watch never acts during a rebalance or while Faust's flow
control is suspended (Faust seeks every partition then itself).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from stream.worker.sequence import PartitionSequencer

log = logging.getLogger(__name__)


class StallWatch:
    def __init__(
        self,
        sequencer: PartitionSequencer,
        idle_s: float,
        start_offset: int | None = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sequencer, self.idle_s, self.start_offset, self.clock = sequencer, idle_s, start_offset, clock
        self.last_batch = clock()
        self.reads_again = 0  # a metric: partitions sought back by the watch

    def batch_seen(self) -> None:
        self.last_batch = self.clock()

    def expected(self, tp: Any) -> int | None:
        """The next offset the agent should see from `tp`: sequencer, then committed, then log start."""
        expected = self.sequencer.expected.get(tp)
        if expected is None:
            expected = self.sequencer.committed(tp)
        return self.start_offset if expected is None else expected

    async def check(self, partitions: Iterable[Any], position: Callable[[Any], Awaitable[int]]) -> list[Any]:
        """Seek back each of `partitions` fetched past its expected offset, if the agent is idle → those."""
        if self.clock() - self.last_batch < self.idle_s:
            return []
        stalled = []
        for tp in partitions:
            expected = self.expected(tp)
            fetched = await position(tp)
            if expected is not None and fetched is not None and fetched > expected:
                stalled.append(tp)
                log.warning("partition %s: fetched to %d, nothing from %d on reached the idle agent:"
                            " reading it again from %d", tp, fetched, expected, expected)  # fmt: skip
                await self.sequencer.seek(tp, expected)
        if stalled:
            self.reads_again += len(stalled)
            self.last_batch = self.clock()  # give the re-read a full idle period
        return stalled
