"""`PartitionSequencer`: a partition's records in order and none skipped; `BatchCommitter`'s ack guard."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from stream.worker.sequence import PartitionSequencer, faust_gap


def event(partition: int, offset: int) -> Any:
    return SimpleNamespace(message=SimpleNamespace(tp=partition, offset=offset))


def offsets(events: list[Any]) -> list[tuple[int, int]]:
    return [(e.message.tp, e.message.offset) for e in events]


class Partitions:
    def __init__(self, committed: dict[int, int], gaps: dict[int, tuple[int, int]] | None = None) -> None:
        self.committed, self.gaps, self.sought = committed, gaps or {}, []

    def sequencer(self) -> PartitionSequencer:
        async def seek(tp: int, offset: int) -> None:
            self.sought.append((tp, offset))

        def is_gap(tp: int, start: int, stop: int) -> bool:
            gap = self.gaps.get(tp)
            return gap is not None and gap[0] <= start and stop <= gap[1]

        return PartitionSequencer(self.committed.get, seek, is_gap)


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


async def test_gaps_faust_recorded_need_no_seek_and_a_rebalance_starts_over() -> None:
    parts = Partitions({0: 10}, gaps={0: (11, 20)})
    seq = parts.sequencer()
    assert offsets(await seq.admit([event(0, 10), event(0, 20)], generation=1)) == [(0, 10), (0, 20)]
    assert parts.sought == []
    parts.committed[0] = 40  # another worker went on; after the rebalance the partition is ours again
    assert offsets(await seq.admit([event(0, 40)], generation=2)) == [(0, 40)]


def test_faust_gap_reads_interval_trees() -> None:
    class Interval(SimpleNamespace):
        pass

    class Tree:
        def __init__(self, *spans: tuple[int, int]) -> None:
            self.spans = [Interval(begin=b, end=e) for b, e in spans]

        def __bool__(self) -> bool:
            return bool(self.spans)

        def overlap(self, start: int, stop: int) -> list[Interval]:
            return [i for i in self.spans if i.begin < stop and i.end > start]

    is_gap = faust_gap({0: Tree((11, 15), (15, 21))})
    assert is_gap(0, 11, 21) and is_gap(0, 12, 14) and not is_gap(0, 10, 12) and not is_gap(1, 11, 12)


async def test_the_committer_accepts_acks_only_from_the_batch_it_commits() -> None:
    from stream.worker.transactions import BatchCommitter

    acked: list[int] = []

    class Consumer:
        async def commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
            return True

        def ack(self, message: Any) -> bool:
            acked.append(message.offset)
            return True

    app = SimpleNamespace(consumer=Consumer(), crash_reason=None)
    committer = BatchCommitter(app, exactly_once=False)  # type: ignore[arg-type]
    committer.install()
    skipped = SimpleNamespace(tp=0, offset=7)
    assert app.consumer.ack(skipped) is False  # e.g. skipped by a stopping stream: never committable

    class Event:
        def __init__(self, offset: int) -> None:
            self.message = SimpleNamespace(tp=0, offset=offset)

        def ack(self) -> bool:
            return app.consumer.ack(self.message)

    async def write() -> None:
        pass

    await committer.commit_batch([Event(8), Event(9)], write)
    assert acked == [8, 9] and app.consumer.ack(SimpleNamespace(tp=0, offset=10)) is False
