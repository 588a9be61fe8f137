"""Reads one time range of a topic, partition by partition, in chunks — with no consumer-group side effects.

Why partition by partition: topics are keyed by user_id, so a partition holds all of its users' events
and nothing a user's state needs lives elsewhere. Replaying one partition at a time (in offset order,
as the live worker read it) makes micro-batches — and so the scores — identical from run to run, and
lets the caller drop a partition's user state when it is done: memory is bounded by one fetch plus the
users of one partition, not by the topic.

No group side effects: a throwaway group.id, `assign()` (never `subscribe()`: no group membership, no
rebalance of the live worker) and `enable.auto.commit=False` (no offsets are ever committed).
`isolation.level=read_committed`: records of aborted or still-open transactions are never replayed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from stream.errors import PantherError
from stream.settings import Settings
from stream.topics import admin_client, existing_partitions

STALL_S = 30.0  # no progress for this long below the end offset captured at start: give up clearly


@dataclass(frozen=True)
class RawRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int  # the Kafka record timestamp


@dataclass(frozen=True)
class PartitionRange:
    """Offsets [start, stop) of one partition; `stop` ≤ the end offset captured when the run began."""

    partition: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return max(0, self.stop - self.start)


class RangeReader:
    def __init__(self, settings: Settings, topic: str, fetch_records: int = 5_000) -> None:
        partitions = existing_partitions(admin_client(settings), settings)
        if topic not in partitions:
            raise PantherError(
                f"topic {topic!r} does not exist at {settings.kafka_bootstrap} "
                f"(known: {', '.join(sorted(t for t in partitions if not t.startswith('__')))})"
            )
        self.topic = topic
        self.partitions = partitions[topic]
        self.fetch_records = fetch_records
        self.timeout_s = settings.kafka_timeout_s
        self.consumer = Consumer(
            {
                **settings.kafka_client_config(),
                "group.id": f"panther-backtest-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "error",  # never skip silently if retention deleted the range
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                # A long poll left at one partition's end delays the next partition's first fetch by
                # as much (the 500 ms default cost ~0.45 s per partition): the range is all there.
                "fetch.wait.max.ms": 50,
            }
        )

    def plan(self, from_ms: int | None, until_ms: int | None) -> list[PartitionRange]:
        """Per partition: first offset stamped ≥ from_ms (None: the log start) up to the first stamped
        > until_ms (None: the end), never past the end offset captured now."""
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        bounds = [self.consumer.get_watermark_offsets(tp, self.timeout_s, cached=False) for tp in tps]
        ends = [high for _, high in bounds]
        starts = [low for low, _ in bounds] if from_ms is None else self._offsets_at(from_ms, ends)
        stops = ends if until_ms is None else self._offsets_at(until_ms + 1, ends)
        return [
            PartitionRange(p, start, min(stop, end))
            for p, (start, stop, end) in enumerate(zip(starts, stops, ends, strict=True))
        ]

    def _offsets_at(self, timestamp_ms: int, ends: list[int]) -> list[int]:
        query = [TopicPartition(self.topic, p, max(0, timestamp_ms)) for p in range(self.partitions)]
        found = self.consumer.offsets_for_times(query, self.timeout_s)
        # -1: no record stamped at/after the time in that partition → the range starts/ends at the end.
        return [tp.offset if tp.offset >= 0 else ends[tp.partition] for tp in found]

    def read(self, part: PartitionRange) -> Iterator[list[RawRecord]]:
        """Chunks of at most `fetch_records` records of [start, stop), in offset order."""
        if part.size == 0:
            return
        tp = TopicPartition(self.topic, part.partition, part.start)
        self.consumer.assign([tp])
        position, last_progress = part.start, time.monotonic()
        try:
            while position < part.stop:
                # Never ask for more than the range still holds: `consume` waits out its timeout when
                # it cannot fill the request, which cost a second at the end of every partition.
                wanted = min(self.fetch_records, max(1, part.stop - position))
                messages = self.consumer.consume(wanted, timeout=1.0)
                chunk: list[RawRecord] = []
                done = False
                for message in messages:
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            done = True  # the last stable offset: nothing more is committed yet
                            continue
                        if error.code() == KafkaError._AUTO_OFFSET_RESET:
                            raise PantherError(
                                f"{self.topic}[{part.partition}] offset {position} is gone (deleted by "
                                "retention while the backtest ran?): history replayed with old record "
                                "timestamps needs retention.ms longer than its age (PANTHER_RETENTION_MS)"
                            )
                        raise KafkaException(error)
                    if message.offset() >= part.stop:
                        done = True
                        break
                    chunk.append(_raw(message))
                if chunk:
                    position = chunk[-1].offset + 1
                    yield chunk
                    last_progress = time.monotonic()  # the caller's scoring time is not a stall
                # Control records (transaction markers) take offsets but are never delivered.
                current = self.consumer.position([TopicPartition(self.topic, part.partition)])[0].offset
                position = max(position, current)
                if done:
                    return
                if not chunk and time.monotonic() - last_progress > STALL_S:
                    raise PantherError(
                        f"{self.topic}[{part.partition}] stopped at offset {position} before {part.stop} "
                        f"for {STALL_S:.0f} s (an open transaction, or the broker went away)"
                    )
        finally:
            self.consumer.unassign()

    def close(self) -> None:
        self.consumer.close()


def _raw(message: object) -> RawRecord:
    return RawRecord(
        partition=message.partition(),  # type: ignore[attr-defined]
        offset=message.offset(),  # type: ignore[attr-defined]
        key=message.key(),  # type: ignore[attr-defined]
        value=message.value() or b"",  # type: ignore[attr-defined]
        timestamp_ms=message.timestamp()[1],  # type: ignore[attr-defined]
    )
