"""`BatchCommitter` against a fake Faust app: what each delivery mode does, in which order.

The real-broker proofs are the worker tests (exactly once, kills, restarts); these pin the protocol:
exactly_once writes, sends, acks, flushes and commits, one batch at a time;
at_least_once has every output acknowledged before the state is written; outputs leave as one record
batch per (topic, partition); a commit commits what was written, nothing else, and nothing from before
a rebalance; a failed commit poisons the committer and stops the app.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, namedtuple
from types import SimpleNamespace
from typing import Any

import pytest

from stream.worker.transactions import BatchCommitter, BatchDropped, BatchFailed, Output

Metadata = namedtuple("Metadata", "topic_partition offset")


class FakeKafkaProducer:
    """What `_send_batches` uses of an AIOKafkaProducer."""

    def __init__(self, log: list[str], transactional_id: str | None) -> None:
        self.log, self.next_offset = log, {}
        self._txn_manager = SimpleNamespace(transactional_id=transactional_id)
        self._message_accumulator = SimpleNamespace(_compression_type=0)
        self.futures: list[asyncio.Future[Any]] = []

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:
        count = batch._relative_offset
        self.log.append(f"send {topic}/{partition} x{count}")
        base = self.next_offset.get((topic, partition), 0)
        self.next_offset[(topic, partition)] = base + count
        future = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        future.set_result(Metadata((topic, partition), base))
        return future


def fake_app(log: list[str], commit_delay_s: float = 0.0, fail_commit: bool = False) -> Any:
    acked: list[int] = []

    async def commit(topics: Any = None, start_new_transaction: bool = True) -> bool:
        log.append("commit start")
        await asyncio.sleep(commit_delay_s)
        if fail_commit:
            raise RuntimeError("fenced")
        log.append("commit end")
        return True

    def ack(message: Any) -> bool:
        acked.append(message.offset)
        return True

    async def flush() -> None:
        log.append("flush")

    async def crash(exc: BaseException) -> None:
        log.append(f"crash {type(exc).__name__}")

    plain = FakeKafkaProducer(log, None)
    producers = {f"app-g-{p}": FakeKafkaProducer(log, f"app-g-{p}") for p in (0, 1)}
    producer = SimpleNamespace(
        flush=flush, _ensure_producer=lambda: plain, _transaction_producers=producers,
        _trn_locks={tid: asyncio.Lock() for tid in producers},
    )  # fmt: skip
    acks = {"_acked": defaultdict(list), "_acked_index": defaultdict(set)}  # Faust's own ack lists
    consumer = SimpleNamespace(commit=commit, ack=ack, **acks)
    return SimpleNamespace(
        consumer=consumer, producer=producer, crash_reason=None, crash=crash, conf=SimpleNamespace(id="app"),
        acked=acked, assignor=SimpleNamespace(group_for_topic=lambda topic: "g"), consumer_generation_id=1,
    )  # fmt: skip


class Event:
    def __init__(self, app: Any, partition: int, offset: int) -> None:
        self.app = app
        self.message = SimpleNamespace(tp=("in", partition), offset=offset, partition=partition, topic="in")

    def ack(self) -> bool:
        return self.app.consumer.ack(self.message)


def writer(log: list[str], name: str, changelog: list[Output] | None = None) -> Any:
    async def write() -> list[Output] | None:
        log.append(f"write {name}")
        return changelog

    return write


async def test_exactly_once_writes_sends_acks_then_commits_one_transaction_at_a_time() -> None:
    log: list[str] = []
    app = fake_app(log, commit_delay_s=0.05)
    committer = BatchCommitter(app, exactly_once=True)
    first, second = [Event(app, 0, 1), Event(app, 1, 1)], [Event(app, 0, 2)]
    outputs = [Output(first[0], "scores", b"u", b"s1"), Output(first[1], "scores", b"v", b"s2")]
    await asyncio.gather(committer.commit_batch(first, writer(log, "1"), outputs),
                         committer.commit_batch(second, writer(log, "2")))  # fmt: skip
    assert log[:6] == ["write 1", "send scores/0 x1", "send scores/1 x1", "flush", "commit start",
                       "commit end"], log  # fmt: skip
    assert log.index("commit end") < log.index("write 2"), log  # the second waited for the first
    assert app.acked == [1, 1, 2] and committer.clean


async def test_on_written_runs_after_the_sends_and_before_the_commit_and_never_for_a_dropped_batch() -> None:
    log: list[str] = []
    app = fake_app(log)
    committer = BatchCommitter(app, exactly_once=True)
    events = [Event(app, 0, 1)]
    outputs = [Output(events[0], "scores", b"u", b"s")]
    await committer.commit_batch(events, writer(log, "1"), outputs, on_written=lambda: log.append("refresh"))
    assert log[:5] == ["write 1", "send scores/0 x1", "refresh", "flush", "commit start"], log
    app.consumer_generation_id = 2
    with pytest.raises(BatchDropped):
        await committer.commit_batch([Event(app, 0, 2)], writer(log, "2"), generation=1,
                                     on_written=lambda: log.append("refresh 2"))  # fmt: skip
    assert "refresh 2" not in log and "write 2" not in log


async def test_at_least_once_has_outputs_acknowledged_before_the_state_is_written() -> None:
    log: list[str] = []
    app = fake_app(log)
    committer = BatchCommitter(app, exactly_once=False)
    events = [Event(app, 0, 5)]
    changelog = [Output(events[0], "state-changelog", b"u", b"state")]
    outputs = [Output(events[0], "scores", b"u", b"s"), Output(events[0], "alerts", b"u", b"a")]
    await committer.commit_batch(events, writer(log, "state", changelog), outputs)
    assert log == ["send scores/0 x1", "send alerts/0 x1", "write state", "send state-changelog/0 x1"]
    assert app.acked == [5] and committer.clean  # no flush, no transaction: Faust's timer commits


async def test_outputs_leave_as_one_record_batch_per_partition_and_report_their_last_offsets() -> None:
    log: list[str] = []
    app = fake_app(log)
    delivered: list[tuple[str, Any, int]] = []
    committer = BatchCommitter(app, exactly_once=True, on_delivered=lambda *args: delivered.append(args))
    events = [Event(app, p, o) for p, o in ((0, 1), (1, 1), (0, 2), (0, 3))]
    outputs = [Output(e, "scores", b"k", b"v") for e in events]
    await committer.commit_batch(events, writer(log, "1"), outputs)
    await asyncio.sleep(0)  # done callbacks run on the next loop turn
    assert [line for line in log if line.startswith("send")] == ["send scores/0 x3", "send scores/1 x1"]
    assert sorted(delivered) == [("scores", ("scores", 0), 2), ("scores", ("scores", 1), 0)]


async def test_a_failed_commit_poisons_the_committer() -> None:
    log: list[str] = []
    app = fake_app(log, fail_commit=True)
    committer = BatchCommitter(app, exactly_once=True)
    with pytest.raises(RuntimeError, match="fenced"):
        await committer.commit_batch([Event(app, 0, 1)], writer(log, "1"))
    await committer.fail(RuntimeError("fenced"))  # what the agent does with a failed batch
    assert "crash RuntimeError" in log and not committer.clean
    with pytest.raises(BatchFailed):
        await committer.commit_batch([Event(app, 0, 2)], writer(log, "2"))
    assert "write 2" not in log


async def test_a_commit_commits_the_offset_after_what_was_written_and_nothing_faust_acked() -> None:
    log: list[str] = []
    app = fake_app(log)
    committer = BatchCommitter(app, exactly_once=False)
    committer.install()
    app.consumer._acked[("in", 1)].extend([40, 41])  # acked by Faust (e.g. skipped by a stream): not ours
    await committer.commit_batch([Event(app, 0, 7), Event(app, 0, 5), Event(app, 0, 6)], writer(log, "1"))
    assert app.consumer._filter_tps_with_pending_acks() == [("in", 0)]
    assert app.consumer._new_offset(("in", 0)) == 8 and app.consumer._acked[("in", 1)] == []


async def test_a_batch_admitted_before_a_rebalance_is_dropped_unwritten_and_nothing_older_commits() -> None:
    log: list[str] = []
    app = fake_app(log)
    committer = BatchCommitter(app, exactly_once=False)
    committer.install()
    await committer.commit_batch([Event(app, 0, 3)], writer(log, "old"))
    app.consumer_generation_id = 2  # a rebalance: partitions sought back to their committed offsets
    with pytest.raises(BatchDropped, match="before a rebalance"):
        await committer.commit_batch([Event(app, 0, 4)], writer(log, "late"), generation=1)
    assert "write late" not in log and app.acked == [3, 4]  # acked for Faust's bookkeeping only
    assert app.consumer._new_offset(("in", 0)) is None  # 4 (from generation 1) must not commit now
    assert app.consumer._filter_tps_with_pending_acks() == []
    await committer.commit_batch([Event(app, 0, 3)], writer(log, "again"))
    assert app.consumer._new_offset(("in", 0)) == 4 and committer.clean


async def test_a_batch_whose_partition_transaction_was_closed_for_a_revocation_is_dropped_unwritten() -> None:
    log: list[str] = []
    app = fake_app(log)
    committer = BatchCommitter(app, exactly_once=True)
    del app.producer._transaction_producers["app-g-1"]  # Faust closed it after the revocation's commit
    with pytest.raises(BatchDropped, match="app-g-1"):
        await committer.commit_batch([Event(app, 0, 1), Event(app, 1, 1)], writer(log, "1"))
    assert log == [] and committer.clean and not committer.committable


async def test_a_batch_held_through_a_scorer_outage_is_given_up_when_a_rebalance_starts() -> None:
    """Issue 15: pause mode held the batch unacked, so the group's rebalance (Faust's `wait_empty`)
    waited for the whole outage; now the pause notices the rebalance and drops the unwritten batch."""
    from stream.worker.scoring_agent import ScoringAgent

    log: list[str] = []
    app = fake_app(log)
    app.rebalancing = False
    committer = BatchCommitter(app, exactly_once=True)
    committer.install()
    agent = SimpleNamespace(app=app, committer=committer, generation=1)
    events = [Event(app, 0, 7), Event(app, 1, 9)]

    await ScoringAgent._pause(agent, 0.05, events)  # type: ignore[arg-type]  # no rebalance: just a sleep
    assert app.acked == []
    asyncio.get_running_loop().call_later(0.05, lambda: setattr(app, "rebalancing", True))
    began = time.monotonic()
    with pytest.raises(BatchDropped, match="waited for the scorer"):
        await ScoringAgent._pause(agent, 10.0, events)  # type: ignore[arg-type]
    assert time.monotonic() - began < 1.0, "a rebalance must not wait out the backoff"
    assert app.acked == [7, 9] and log == [] and not committer.committable  # released, never committed
