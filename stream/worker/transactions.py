"""A micro-batch's outputs, state and input offsets, committed as the delivery mode promises.

- `exactly_once` (default): one Kafka transaction per micro-batch — its outputs, its state changes
  (table changelogs) and its input offsets commit together or not at all. (Committing behind the next
  batch was tried and bought no throughput; two-worker starts hung in a rebalance with it (2 of 6) and,
  rarer, without it: docs/RELIABILITY.md, "Open".)
- `at_least_once`: the outputs are sent and acknowledged by the broker *before* the state that
  reflects them is written, and the offsets are committable only after that. A crash can therefore
  repeat a score (a batch delivered but not yet written is scored again, same key and txn_id), never
  lose one: a state that already holds an event was written after its score was delivered, so the
  re-read event is recognized as a redelivery and not scored twice from a state that contains it.

Outputs go out in one record batch per (topic, partition) and micro-batch (`send_batch` on the
partition's producer), not one `send` per record.

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
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka.producer.message_accumulator import BatchBuilder

Write = Callable[[], Awaitable[list['Output'] | None]]
log = logging.getLogger(__name__)
RECORD_BATCH_BYTES = 256 * 1024  # one produce batch; under the broker's 1 MB message.max.bytes


class BatchFailed(RuntimeError):
    """A batch could not be committed: the worker stops and the batch is read again after a restart."""


@dataclass(frozen=True)
class Output:
    """One record a batch emits, on the partition (and, exactly once, in the transaction) of `source`."""

    source: Any  # the Faust event it answers (topics are co-partitioned)
    topic: str
    key: bytes | None
    value: bytes


class BatchCommitter:
    """Commits micro-batches as `delivery` promises (module docstring); the worker's one writer."""

    def __init__(self, app: faust.App, exactly_once: bool,
                 observe: Callable[[str, float], None] | None = None,
                 on_delivered: Callable[[str, Any, int], None] | None = None) -> None:  # fmt: skip
        self.app = app
        self.exactly_once = exactly_once
        self.observe = observe  # (phase, seconds): "deliver" | "write" | "commit" (metrics)
        self.on_delivered = on_delivered  # (topic, tp, last offset) of each record batch the broker acked
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

    async def commit_batch(self, events: Sequence[Any], write: Write, outputs: Iterable[Output] = ()) -> None:
        """Commit a batch: `write` (its table writes; → their changelog records), `outputs` (its
        records) and its input `events`, as the delivery mode promises.

        Shielded: a worker stopping mid-batch lets the batch finish, so the shutdown commit (which
        waits for the lock) sees it whole.
        """
        self.install()
        await asyncio.shield(asyncio.ensure_future(self._locked(events, write, list(outputs))))

    async def _locked(self, events: Sequence[Any], write: Write, outputs: list[Output]) -> None:
        async with self._lock:
            if self.failed is not None:
                raise BatchFailed("an earlier batch failed; not committing") from self.failed
            self.dirty = True
            try:
                if not self.exactly_once:
                    started = time.perf_counter()
                    await asyncio.gather(*await self._send(outputs))  # acknowledged before the state
                    self._observe("deliver", started)
                started = time.perf_counter()
                changelog = await write() or []
                if self.exactly_once:
                    await self._send(outputs + changelog)
                elif changelog:
                    await self._send(changelog)  # not awaited: a lost one means a re-score elsewhere
                self._ack(events)
                self._observe("write", started)
                if self.exactly_once:
                    started = time.perf_counter()
                    await self.app.producer.flush()  # changelog writes sit in Faust's buffer until here
                    assert self._commit is not None
                    await self._commit()
                    if self.app.crash_reason is not None:  # Faust reports a fenced commit by crashing
                        raise BatchFailed("commit failed") from self.app.crash_reason
                    self._observe("commit", started)
            except BaseException as exc:
                self.failed = exc
                raise
            self.dirty = False

    def _ack(self, events: Sequence[Any]) -> None:
        self._acking = {(event.message.tp, event.message.offset) for event in events}
        try:
            for event in events:
                event.ack()  # offsets become committable; the batcher's own ack is then a no-op
        finally:
            self._acking = set()

    async def _send(self, outputs: list[Output]) -> list[asyncio.Future[Any]]:
        """One record batch per (producer, topic, partition); → the broker's acknowledgements."""
        groups: dict[tuple[str | None, str, int], list[Output]] = defaultdict(list)
        for out in outputs:
            groups[(self._transactional_id(out.source), out.topic, out.source.message.partition)].append(out)
        futures: list[asyncio.Future[Any]] = []
        for (transactional_id, topic, partition), records in groups.items():
            producer = self.app.producer
            if transactional_id is None:
                sent = await _send_batches(producer._ensure_producer(), topic, partition, records)
            else:
                target = producer._transaction_producers.get(transactional_id)
                if target is None:  # the partition was revoked mid-batch: its next owner reads it again
                    raise BatchFailed(f"no transaction producer for {transactional_id}")
                async with producer._trn_locks[transactional_id]:
                    sent = await _send_batches(target, topic, partition, records)
            for future, count in sent:
                if self.on_delivered is not None:
                    future.add_done_callback(self._delivered_callback(topic, count))
                futures.append(future)
        return futures

    def _delivered_callback(self, topic: str, count: int) -> Callable[[asyncio.Future[Any]], None]:
        def delivered(future: asyncio.Future[Any]) -> None:
            if not future.cancelled() and future.exception() is None and self.on_delivered is not None:
                metadata = future.result()
                self.on_delivered(topic, metadata.topic_partition, metadata.offset + count - 1)

        return delivered

    def _transactional_id(self, source: Any) -> str | None:
        """The id Faust commits `source`'s partition with (exactly_once), else None."""
        if not self.exactly_once:
            return None
        group = self.app.assignor.group_for_topic(source.message.topic)
        return f"{self.app.conf.id}-{group}-{source.message.partition}"

    def _observe(self, phase: str, started: float) -> None:
        if self.observe is not None:
            self.observe(phase, time.perf_counter() - started)

    async def fail(self, exc: BaseException) -> None:
        """Poison the committer and stop the worker: this batch and any open transaction are not committed."""
        if self.failed is None:
            self.failed = exc
        await self.app.crash(exc)


async def _send_batches(producer: Any, topic: str, partition: int,
                        records: list[Output]) -> list[tuple[Any, int]]:  # fmt: skip
    """`records` as record batches of ≤ RECORD_BATCH_BYTES on one partition (aiokafka `send_batch`);
    → (the broker's acknowledgement, records in it) per batch."""
    txn = producer._txn_manager
    transactional = txn is not None and txn.transactional_id is not None

    def builder() -> BatchBuilder:
        codec = producer._message_accumulator._compression_type  # the producer's compression attribute
        return BatchBuilder(RECORD_BATCH_BYTES, codec, is_transactional=transactional)

    sent: list[tuple[Any, int]] = []
    batch, count = builder(), 0
    for record in records:
        if batch.append(timestamp=None, key=record.key, value=record.value) is None:
            sent.append((await producer.send_batch(batch, topic, partition=partition), count))
            batch, count = builder(), 0
            if batch.append(timestamp=None, key=record.key, value=record.value) is None:
                raise BatchFailed(f"a {len(record.value)}-byte record does not fit a record batch")
        count += 1
    sent.append((await producer.send_batch(batch, topic, partition=partition), count))
    return sent
