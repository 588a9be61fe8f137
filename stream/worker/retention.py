"""Inactive users leave the state: their stored windows are deleted, with a tombstone in the changelog.

Without it `user_windows` (and `user_embeddings`) keep every user ever seen, and the store and its
compacted changelog grow without bound. The rule itself is the engine's (`ScoringEngine.retention_ms`):
a state idle for longer than `PANTHER_STATE_RETENTION_DAYS` before the user's next event is forgotten,
judged by event times only, so the live worker and the backtest agree whatever this sweep has deleted.

The sweep reclaims the space. With a batch, at most once per `PANTHER_STATE_SWEEP_INTERVAL_S` per
partition, it reads the next `PANTHER_STATE_SWEEP_KEYS` stored states of each partition in the batch (a
cursor that wraps around; the fixed header only, not a decode)
and deletes those idle for longer than the retention before the partition's *stream time* (the newest
event time the worker has seen on it: event time, not the wall clock, so a replay of old topics keeps
its users), except users of the batch itself. Deletes go out with the batch: the RocksDB delete, and a
tombstone (key, no value) on each table's changelog, in the batch's transaction under exactly_once, so
log compaction frees the user there too and a restore does not bring them back. Cost: one bounded scan
per partition and interval (256 value reads: ~1 ms). Per interval, not per batch: at 1,000 events/s a
batch is a few events, and a scan with every one of them was more reads than the events themselves.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

import faust

from models.fraud.state import UserState
from stream.worker.tables import delete_value
from stream.worker.transactions import Output

FAUST_KEYS = b"__faust"  # Faust's own keys in a store's database (the changelog offset): never a user


class RetentionSweep:
    def __init__(self, retention_ms: int | None, keys_per_batch: int, interval_s: float = 0.0) -> None:
        self.retention_ms = retention_ms
        self.keys_per_batch = keys_per_batch
        self.interval_s = interval_s
        self._last_scan: dict[int, float] = {}  # partition → time.monotonic() of its last scan
        self.stream_time: dict[int, int] = {}  # partition → newest event time seen (epoch ms)
        self._cursor: dict[int, bytes | None] = {}  # partition → the key the next scan starts at
        self.deleted = 0

    def observe(self, partition: int, time_ms: int) -> None:
        if time_ms > self.stream_time.get(partition, -(2**62)):
            self.stream_time[partition] = time_ms

    def expired(self, db: Any, partition: int, busy: set[bytes]) -> list[bytes]:
        """Keys of `db` (one partition's RocksDB) idle past the retention, from the next bounded scan."""
        if self.retention_ms is None or partition not in self.stream_time:
            return []
        horizon = self.stream_time[partition] - self.retention_ms
        scan = db.iter()
        start = self._cursor.get(partition)
        scan.seek(start) if start is not None else scan.seek_to_first()
        found: list[bytes] = []
        for _ in range(self.keys_per_batch):
            if not scan.valid():
                self._cursor[partition] = None  # wrapped: the next scan starts again at the first key
                break
            key = bytes(scan.key())
            spared = key in busy or key.startswith(FAUST_KEYS)
            if not spared and UserState.last_time_of(scan.value()) < horizon:
                found.append(key)
            scan.next()
        else:
            self._cursor[partition] = bytes(scan.key()) if scan.valid() else None
        return found

    def deletions(self, windows: faust.Table, embeddings: faust.Table, sources: Iterable[Any],
                  busy: set[bytes]) -> list[Output]:  # fmt: skip
        """For each partition of `sources` (one event each): delete its expired users, → tombstones."""
        out: list[Output] = []
        now = time.monotonic()
        for source in sources:
            partition = source.message.partition
            recent = now - self._last_scan.get(partition, -math.inf) < self.interval_s
            if partition not in self.stream_time or recent:
                continue  # nothing to judge by yet, or scanned within the interval: a later batch will
            self._last_scan[partition] = now
            keys = self.expired(windows.data._db_for_partition(partition), partition, busy)
            cached = embeddings.data._db_for_partition(partition)
            for key in keys:
                out.append(delete_value(windows, source, key))
                if cached.get(key) is not None:
                    out.append(delete_value(embeddings, source, key))
            self.deleted += len(keys)
        return out
