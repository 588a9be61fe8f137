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

- Faust's committable offset (`_new_offset`) is "the acked offsets, plus the gaps it recorded". Its
  gaps are computed against a read offset that a seek resets while records fetched before the seek are
  still being handed over, so a range of real, unprocessed records can be recorded as a gap, and then
  committed (seen: one event lost across a broker restart, in CI). Holding acks back instead (the
  first design) left messages nobody would ever ack in the consumer's unacked set, and Faust's
  rebalance waits for that set to empty (`wait_empty`): two-worker starts hung in a rebalance.

So: every output is sent with the transactional id of its source partition (the one Faust commits that
partition's offsets with; the topics are co-partitioned), all writes of a batch happen under one lock
that every commit (ours, Faust's timer, rebalance, shutdown) also takes, and the batch ends with ack →
flush → commit. Acks are Faust's again (they only release messages); what a commit commits is decided
here: for each partition, the offset after the last event of a batch that was written under the
consumer generation it was admitted in (`committable`). A message nobody processed never becomes
committable (its partition's next owner, or this worker after a restart, reads it again), and a batch
overtaken by a rebalance is dropped unwritten and read again (`BatchDropped`). Records dropped on the
way in are read again before anything after them is scored (`sequence.py`, which also takes Faust's
read-offset filter out of the way: `keep_every_record`).

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


class BatchDropped(RuntimeError):
    """A rebalance overtook the batch: nothing of it was written; its partitions are read again."""


@dataclass(frozen=True)
class Output:
    """One record a batch emits, on the partition (and, exactly once, in the transaction) of `source`."""

    source: Any  # the Faust event it answers (topics are co-partitioned)
    topic: str
    key: bytes | None
    value: bytes | None  # None: a tombstone (a table key deleted)


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
        self.committable: dict[Any, tuple[Any, int]] = {}  # tp → (generation, next offset to read)
        self._transactional_ids: dict[tuple[str, int], str] = {}

    @property
    def clean(self) -> bool:
        """Everything written was committed: the local state equals the changelog's committed state."""
        return self.failed is None and not self.dirty and self.app.crash_reason is None

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
        consumer._filter_tps_with_pending_acks = self._tps_to_commit  # type: ignore[method-assign]
        consumer._new_offset = self._new_offset  # type: ignore[method-assign]
        if self.exactly_once:
            self.app.producer.commit_transactions = self._concurrent_commits(self.app.producer)  # type: ignore[method-assign]

    def _tps_to_commit(self, topics: Any = None) -> list[Any]:
        """Faust's `_filter_tps_with_pending_acks`, from what this committer made committable."""
        for tp in list(self.app.consumer._acked):  # Faust's own ack lists: released, never read
            self.app.consumer._acked[tp].clear()
            self.app.consumer._acked_index[tp].clear()
        return [tp for tp in self.committable
                if topics is None or tp in topics or tp.topic in topics]  # fmt: skip

    def _new_offset(self, tp: Any) -> int | None:
        """Faust's `_new_offset`: the next offset to read, if written in this consumer generation."""
        generation, offset = self.committable.get(tp, (None, None))
        if generation != self.app.consumer_generation_id:
            self.committable.pop(tp, None)  # from before a rebalance: read again from the committed offset
            return None
        return offset

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

    async def commit_batch(self, events: Sequence[Any], write: Write, outputs: Iterable[Output] = (),
                           generation: Any = None,
                           on_written: Callable[[], None] | None = None) -> None:  # fmt: skip
        """Commit a batch: `write` (its table writes; → their changelog records), `outputs` (its
        records) and its input `events` (each partition's in offset order, none skipped), as the
        delivery mode promises. `on_written` runs once the batch is written and sent, before the
        commit's broker round trips (work that may overlap them: the encoder refresh). Past that
        point the batch commits or the worker stops. Raises BatchDropped, before anything is
        written, when a rebalance overtook it: the consumer generation it was admitted in
        (`generation`; None: the current one) has ended, or a partition's transaction has been
        closed for its revocation.

        Shielded: a worker stopping mid-batch lets the batch finish, so the shutdown commit (which
        waits for the lock) sees it whole.
        """
        self.install()
        if generation is None:
            generation = self.app.consumer_generation_id
        locked = self._locked(events, write, list(outputs), generation, on_written)
        await asyncio.shield(asyncio.ensure_future(locked))

    async def _locked(self, events: Sequence[Any], write: Write, outputs: list[Output],
                      generation: Any, on_written: Callable[[], None] | None) -> None:  # fmt: skip
        async with self._lock:
            if self.failed is not None:
                raise BatchFailed("an earlier batch failed; not committing") from self.failed
            overtaken = self._overtaken(events, generation)
            if overtaken:
                self.drop(events, overtaken)
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
                self._made_committable(events, generation)
                self._ack(events)
                self._observe("write", started)
                if on_written is not None:
                    on_written()
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

    def drop(self, events: Sequence[Any], why: str) -> None:
        """Give a batch up before anything of it is written: released (a rebalance waiting for it goes
        on), never committable, read again by its partitions' next owner. Raises BatchDropped."""
        log.info("a batch of %d events is read again: %s", len(events), why)
        self._ack(events)
        raise BatchDropped(why)

    def _overtaken(self, events: Sequence[Any], generation: Any) -> str:
        """Why a rebalance makes the batch unwritable ('' if it does not).

        Under the lock: a revocation commits through it (Faust's `wait_empty`) before it closes the
        partitions' transactions, so a batch that passed this check is committed whole first.
        """
        if generation != self.app.consumer_generation_id:
            return "admitted before a rebalance, which sought its partitions back"
        if self.exactly_once:
            producers = self.app.producer._transaction_producers
            sources = {e.message.tp: e for e in events}.values()  # one per partition, not per event
            closed = {self._transactional_id(e) for e in sources} - set(producers)
            if closed:
                return f"the transactions of {sorted(closed)} were closed for a rebalance"
        return ""

    def _made_committable(self, events: Sequence[Any], generation: Any) -> None:
        for event in events:
            tp, offset = event.message.tp, event.message.offset
            current = self.committable.get(tp)
            if current is None or current[0] != generation or current[1] <= offset:
                self.committable[tp] = (generation, offset + 1)

    @staticmethod
    def _ack(events: Sequence[Any]) -> None:
        for event in events:
            event.ack()  # Faust's bookkeeping (unacked messages, sensors); the batcher's ack is then a no-op

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
        """The id Faust commits `source`'s partition with (exactly_once), else None. Memoised per
        (topic, partition): asked for every output record, and Faust's settings lookups behind it were
        ~1.5 % of the worker's GIL samples at full speed; a topic's group is fixed when it subscribes."""
        if not self.exactly_once:
            return None
        message = source.message
        key = (message.topic, message.partition)
        found = self._transactional_ids.get(key)
        if found is None:
            group = self.app.assignor.group_for_topic(message.topic)
            found = self._transactional_ids[key] = f"{self.app.conf.id}-{group}-{message.partition}"
        return found

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
                raise BatchFailed(f"a {len(record.value or b'')}-byte record does not fit a record batch")
        count += 1
    sent.append((await producer.send_batch(batch, topic, partition=partition), count))
    return sent
