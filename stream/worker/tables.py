"""Stream state, only in Faust tables (RocksDB + changelog): per-user windows and cached embeddings.

Values are our own compact bytes (the models' `UserState.to_bytes`, `CachedEmbedding.to_bytes`), so the
changelog carries exactly what the backtest and the in-process evaluation reconstruct.

The scoring agent reads and writes them in bulk (`read_value`, `write_values`): straight to the RocksDB
database of the source event's partition, and the changelog record handed to the committer as one more
`Output`, sent in the batch's record batches (inside its transaction under exactly_once). Faust's own
`table[key] = value` sends each changelog record through its producer buffer one by one, and its
conductor then waits for that buffer to ebb before each next message: ~13 % of the worker's Python
time at full speed (py-spy, docs/BENCHMARKS.md). What Faust does besides is kept: the store's key
index, and the changelog offset it records so a restart replays only the changelog's tail
(`ChangelogOffsets`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import faust
from rocksdict import WriteBatch, WriteOptions

from stream.worker.transactions import Output


@dataclass(frozen=True)
class Tables:
    user_windows: faust.Table
    user_embeddings: faust.Table
    wal: bool = True  # False under exactly_once: the local store is rebuilt after any unclean stop


def _without_wal() -> WriteOptions:
    options = WriteOptions()
    options.disable_wal = True
    return options


NO_WAL = _without_wal()


MEMTABLES = 2  # per database: one filling while the other flushes


def rocksdb_options(write_buffer_mb: int, block_cache_mb: int) -> dict[str, int]:
    """Faust's `RocksDBOptions` for one state database: at most MEMTABLES x write_buffer_mb of unflushed
    writes and block_cache_mb of cached blocks (each scored event rewrites its user's state, ~5 KB: with
    Faust's 64 MB memtables the worker's RSS grew ~5 MB per 1,000 events scored: test_faults.py's flood)."""
    return {
        "write_buffer_size": write_buffer_mb << 20,
        "max_write_buffer_number": MEMTABLES,
        "block_cache_size": block_cache_mb << 20,
    }


def declare_tables(app: faust.App, partitions: int, options: dict[str, int] | None = None, *,
                   wal: bool = True) -> Tables:
    def table(name: str, help_: str) -> faust.Table:
        return app.Table(
            name, default=None, partitions=partitions, key_type=bytes, value_type=bytes, help=help_,
            options=options,
        )  # fmt: skip

    return Tables(
        user_windows=table("user_windows", "user_id → rolling token window + running statistics"),
        user_embeddings=table("user_embeddings", "user_id → profile ids, embedding, model version, time"),
        wal=wal,
    )


def read_value(table: faust.Table, source: Any, key: bytes) -> bytes | None:
    """`table`'s value for `key`, read from the database of `source`'s partition (where it is written)."""
    return table.data._db_for_partition(source.message.partition).get(key)


def write_value(table: faust.Table, source: Any, key: bytes, value: bytes) -> Output:
    """Write `key` → `value` to the database of `source`'s partition; → its changelog record, to send.
    One put per key: the reference `write_values` is tested against."""
    store = table.data
    partition = source.message.partition
    store._db_for_partition(partition).put(key, value)
    store._key_index[key] = partition
    return Output(source, table.changelog_topic.get_topic_name(), key, value)


def write_values(table: faust.Table, writes: Iterable[tuple[Any, bytes, bytes]], *,
                 wal: bool = True) -> list[Output]:
    """`write_value` for many (source, key, value): one RocksDB write batch per partition's database
    (a put per key cost ~6 µs, a batch ~3 µs a key: the same WAL append made once); → the changelog
    records, in the order given. A key given twice keeps its last value, as two puts would.

    `wal=False` skips RocksDB's write-ahead log (~3 → ~0.7 µs a key, `python bench/state_disk.py`).
    Only for a store that is never trusted after a crash: under exactly_once the local copy is wiped
    after any unclean stop and restored from the changelog (`state_dir.py`); a clean stop closes the
    databases, and RocksDB flushes unlogged memtables when it closes (tested)."""
    store = table.data
    topic = table.changelog_topic.get_topic_name()
    batches: dict[int, WriteBatch] = {}
    key_index = store._key_index
    out = []
    for source, key, value in writes:
        partition = source.message.partition
        batch = batches.get(partition)
        if batch is None:
            batch = batches[partition] = WriteBatch(raw_mode=True)  # as Faust opens the databases
        batch.put(key, value)
        key_index[key] = partition
        out.append(Output(source, topic, key, value))
    for partition, batch in batches.items():
        db = store._db_for_partition(partition)
        if wal:
            db.write(batch)
        else:
            db.write(batch, NO_WAL)
    return out


def delete_value(table: faust.Table, source: Any, key: bytes) -> Output:
    """Delete `key` from the database of `source`'s partition; → its changelog tombstone, to send."""
    store = table.data
    store._db_for_partition(source.message.partition).delete(key)
    store._key_index.pop(key, None)
    return Output(source, table.changelog_topic.get_topic_name(), key, None)


class ChangelogOffsets:
    """The last changelog offset each store holds, recorded as Faust's `_on_changelog_sent` does."""

    def __init__(self, app: faust.App, tables: Tables, exactly_once: bool) -> None:
        self.app, self.exactly_once = app, exactly_once
        both = (tables.user_windows, tables.user_embeddings)
        self.stores = {table.changelog_topic.get_topic_name(): table.data for table in both}

    def __call__(self, topic: str, tp: Any, last_offset: int) -> None:
        store = self.stores.get(topic)
        if store is None:
            return
        if self.exactly_once:  # written to RocksDB when the partition's offsets commit
            self.app.tables.persist_offset_on_commit(store, tp, last_offset)
        else:
            store.set_persisted_offset(tp, last_offset)
