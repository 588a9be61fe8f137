"""`PartitionSequencer`: a partition's records in order and none skipped, whatever Faust drops."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, NamedTuple

from stream.worker.sequence import EveryRecord, PartitionSequencer


class TP(NamedTuple):
    topic: str
    partition: int


def event(partition: int, offset: int) -> Any:
    return SimpleNamespace(message=SimpleNamespace(tp=partition, offset=offset))


def offsets(events: list[Any]) -> list[tuple[int, int]]:
    return [(e.message.tp, e.message.offset) for e in events]


class Partitions:
    def __init__(self, committed: dict[int, int]) -> None:
        self.committed, self.sought = committed, []

    def sequencer(self) -> PartitionSequencer:
        async def seek(tp: int, offset: int) -> None:
            self.sought.append((tp, offset))

        return PartitionSequencer(self.committed.get, seek)


async def test_in_order_batches_pass_and_a_dropped_record_is_read_again_before_anything_after_it() -> None:
    parts = Partitions({0: 10, 1: 5})
    seq = parts.sequencer()
    assert offsets(await seq.admit([event(0, 10), event(1, 5), event(0, 11)])) == [(0, 10), (1, 5), (0, 11)]
    # 12 and 13 were dropped on the way in: partition 0 waits, partition 1 goes on
    got = await seq.admit([event(0, 14), event(0, 15), event(1, 6)])
    assert offsets(got) == [(1, 6)] and parts.sought == [(0, 12)]
    # copies still buffered from before the seek are left out, without seeking again
    assert await seq.admit([event(0, 16), event(0, 17)]) == [] and parts.sought == [(0, 12)]
    # after the seek: 12 onwards, in order (and copies of what was scored are left out)
    got = await seq.admit([event(0, 11), event(0, 12), event(0, 13), event(0, 14)])
    assert offsets(got) == [(0, 12), (0, 13), (0, 14)] and seq.seeks == 1


async def test_a_jump_without_records_is_accepted_after_one_look() -> None:
    parts = Partitions({0: 10})
    seq = parts.sequencer()
    await seq.admit([event(0, 10)])
    assert await seq.admit([event(0, 12)]) == [] and parts.sought == [(0, 11)]  # a transaction marker at 11?
    assert offsets(await seq.admit([event(0, 12), event(0, 13)])) == [(0, 12), (0, 13)]  # yes: 12 again


async def test_a_rebalance_starts_over_from_the_committed_offsets() -> None:
    parts = Partitions({0: 10})
    seq = parts.sequencer()
    assert offsets(await seq.admit([event(0, 10), event(0, 11)], generation=1)) == [(0, 10), (0, 11)]
    parts.committed[0] = 40  # another worker went on; after the rebalance the partition is ours again
    assert offsets(await seq.admit([event(0, 40)], generation=2)) == [(0, 40)] and parts.sought == []


async def test_a_stale_copy_after_a_seek_is_not_taken_for_the_first_record_back() -> None:
    parts = Partitions({0: 100})
    seq = parts.sequencer()
    assert await seq.admit([event(0, 105), event(0, 106)]) == [] and parts.sought == [(0, 100)]
    # records fetched before the seek are still handed over, then the re-read
    assert await seq.admit([event(0, 151), event(0, 152)]) == []
    got = await seq.admit([event(0, 100), event(0, 101)])
    assert offsets(got) == [(0, 100), (0, 101)] and parts.sought == [(0, 100)]


async def test_a_dropped_batch_is_expected_again() -> None:
    parts = Partitions({0: 10})
    seq = parts.sequencer()
    dropped = await seq.admit([event(0, 10), event(0, 11)])
    seq.rewind(dropped)  # a rebalance overtook it: nothing written
    assert await seq.admit([event(0, 12)]) == [] and parts.sought == [(0, 10)]
    assert offsets(await seq.admit([event(0, 10), event(0, 11), event(0, 12)])) == [(0, 10), (0, 11), (0, 12)]


def test_faust_read_offsets_never_filter_the_agents_topics() -> None:
    """Faust drops a record below the read offset and records a gap above it: not for our topics."""
    read = EveryRecord(["transactions"])
    ours, other = TP("transactions", 0), TP("changelog", 0)
    read[ours], read[other] = 150, 150  # pushed up by records fetched before a seek
    assert read[ours] is None and read[other] == 150
    assert read[TP("changelog", 1)] is None  # a defaultdict still
