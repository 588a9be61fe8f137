"""Exactly once, one micro-batch at a time: its outputs, state changes and input offsets commit together.

Why this exists (faust-streaming 0.15.3 with aiokafka, read in its sources):
- Faust picks a topic's transactional producer from the *consumer's* metadata and topic groups. Output
  topics the worker only writes to (`transaction-scores`, `fraud-alerts`, `transactions-dlq`) are in
  neither, so `topic.send` silently went through the plain producer: outputs were outside the Kafka
  transaction (a reprocessed batch emitted them again), and when the metadata did list them the send
  raised KeyError inside the agent, whose batch was then acked unprocessed (a lost score).
- Faust commits whenever its timer, its ack counter or a rebalance says so, also in the middle of a batch,
  and its transactional commit does not flush the producer buffer that holds table changelog writes:
  half a batch's outputs, or its offsets without its state, could commit.
- `take_events` acks a batch even when the body raised, so a failure would be committed as done.
- A stream acks the messages it *skips* (faust/streams.py `__aiter__`: while flow control is suspended,
  on a stop or a rebalance, and for messages of an older consumer generation), so that "the lag does
  not grow". Those messages were fetched but never processed: the shutdown commit then committed past
  them and they were never scored (seen: a SIGTERM landing while 29 records sat in the stream's queue;
  the restarted worker resumed after them). Around the seek that ends table recovery, fetched records
  can also be dropped without being delivered (seen: 2 records, right after a restart).

So: every output is sent with the transactional id of its source partition (the one Faust commits that
partition's offsets with; the topics are co-partitioned), all writes of a batch happen under one lock
that every commit (ours, Faust's timer, rebalance, shutdown) also takes, the batch ends with ack →
flush → commit, and the consumer accepts an ack only from a batch being committed here: a message
nobody processed never becomes committable (its partition's next owner, or this worker after a
restart, reads it again). Records dropped on the way in are read again before anything after them
is scored (`sequence.py`).

A failure poisons the committer: nothing is committed any more and the worker stops, so the open
transaction is aborted and the batch is read again after a restart (see `state_dir.py` for why the
local RocksDB copy is then rebuilt from the changelog).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust

Write = Callable[[], Awaitable[None]]
log = logging.getLogger(__name__)


class BatchFailed(RuntimeError):
    """A batch could not be committed: the worker stops and the batch is read again after a restart."""


class BatchCommitter:
    """One Kafka transaction per micro-batch under exactly_once; plain sends and acks under at_least_once."""

    def __init__(self, app: faust.App, exactly_once: bool) -> None:
        self.app = app
        self.exactly_once = exactly_once
        self.failed: BaseException | None = None
        self.dirty = False  # state written locally since the last successful commit
        self._lock = asyncio.Lock()
        self._commit: Callable[..., Awaitable[bool]] | None = None
        self._acking: set[tuple[Any, int]] = set()  # (tp, offset) of the batch being committed

    @property
    def clean(self) -> bool:
        """Everything written was committed: the local state equals the changelog's committed state."""
        return self.failed is None and not self.dirty

    def install(self) -> None:
        """Route every commit and ack Faust makes through the committer (once, before the first batch)."""
        if self._commit is not None:
            return
        consumer = self.app.consumer
        original = consumer.commit
        self._commit = original

        async def guarded_commit(topics: Any = None, start_new_transaction: bool = True) -> bool:
            async with self._lock:
                if self.failed is not None:
                    return False  # never commit after a failure: the open transaction must abort
                return await original(topics, start_new_transaction=start_new_transaction)

        consumer.commit = guarded_commit  # type: ignore[method-assign]
        original_ack = consumer.ack

        def guarded_ack(message: Any) -> bool:
            if (message.tp, message.offset) not in self._acking:
                return False  # skipped or never processed: must not become committable
            return bool(original_ack(message))

        consumer.ack = guarded_ack  # type: ignore[method-assign]
        if self.exactly_once:
            self.app.producer.commit_transactions = self._concurrent_commits(self.app.producer)  # type: ignore[method-assign]

    @staticmethod
    def _concurrent_commits(producer: Any) -> Callable[..., Awaitable[None]]:
        """Faust's `commit_transactions`, with the partitions' transactions committed side by side.

        Faust (0.15.3, faust/transport/drivers/aiokafka.py) commits one transactional producer after
        the other: per source partition, offsets to the transaction, EndTxn, begin. Each is a few
        broker round trips, so a batch's commit grew with the partition count (~110 ms of a 300 ms
        batch at 4 partitions on the loaded dev machine). The transactions are independent (one
        producer and one lock per transactional id; a crash between two of them leaves the same
        mix of committed and open transactions either way), so they can run concurrently.
        """
        locks, producers = producer._trn_locks, producer._transaction_producers

        async def one(transactional_id: str, offsets: Any, group_id: str, start_new: bool) -> None:
            async with locks[transactional_id]:
                transaction_producer = producers.get(transactional_id)
                if transaction_producer is None:  # as Faust: a revoked partition's new owner reads it again
                    log.warning("commit invoked for unknown transaction %s", transactional_id)
                    return
                await transaction_producer.send_offsets_to_transaction(offsets, group_id)
                await transaction_producer.commit_transaction()
                if start_new:
                    await transaction_producer.begin_transaction()

        async def commit_transactions(tid_to_offset_map: Any, group_id: str,
                                      start_new_transaction: bool = True) -> None:  # fmt: skip
            await asyncio.gather(*(one(tid, offsets, group_id, start_new_transaction)
                                   for tid, offsets in tid_to_offset_map.items()))  # fmt: skip

        return commit_transactions

    def assigned(self, events: Sequence[Any]) -> list[Any]:
        """Events whose partition is still ours (a take() buffer can outlive a rebalance)."""
        assignment = self.app.consumer.assignment()
        return [event for event in events if event.message.tp in assignment]

    async def send(self, channel: faust.TopicT, source: Any, key: bytes | None, value: bytes) -> None:
        """`value` on `channel`, on the `source` event's partition, inside that partition's transaction."""
        partition = source.message.partition
        if not self.exactly_once:
            await channel.send(key=key, value=value, partition=partition)
            return
        group = self.app.assignor.group_for_topic(source.message.topic)
        transactional_id = f"{self.app.conf.id}-{group}-{partition}"
        await self.app.producer.send(
            channel.get_topic_name(), key, value, partition, None, None, transactional_id=transactional_id
        )

    async def commit_batch(self, events: Sequence[Any], write: Write) -> None:
        """Run `write` (table writes and sends), ack `events`, and commit it all as one transaction.

        Shielded: a worker stopping mid-batch lets the batch finish, so the shutdown commit (which
        waits for the lock) sees it whole.
        """
        self.install()
        task = asyncio.ensure_future(self._locked(events, write))
        await asyncio.shield(task)

    async def _locked(self, events: Sequence[Any], write: Write) -> None:
        async with self._lock:
            if self.failed is not None:
                raise BatchFailed("an earlier batch failed; not committing") from self.failed
            self.dirty = True
            try:
                await write()
                self._acking = {(event.message.tp, event.message.offset) for event in events}
                try:
                    for event in events:
                        event.ack()  # offsets become committable; take_events' own ack is then a no-op
                finally:
                    self._acking = set()
                if self.exactly_once:
                    await self.app.producer.flush()  # changelog writes sit in Faust's buffer until here
                    assert self._commit is not None
                    await self._commit()
                    if self.app.crash_reason is not None:  # Faust reports a fenced commit by crashing
                        raise BatchFailed("commit failed") from self.app.crash_reason
            except BaseException as exc:
                self.failed = exc
                raise
            self.dirty = False

    async def fail(self, exc: BaseException) -> None:
        """Poison the committer and stop the worker: this batch and any open transaction are not committed."""
        if self.failed is None:
            self.failed = exc
        await self.app.crash(exc)
