"""`write_values` (one RocksDB write batch per partition) against `write_value` (one put per key)."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from rocksdict import Options, Rdict

from stream.worker.tables import read_value, rocksdb_options, write_value, write_values


class FakeTable:
    """The parts of a Faust table the bulk writers use, over real RocksDB databases (raw mode, as Faust's)."""

    def __init__(self, root: Path) -> None:
        dbs = {p: Rdict(str(root / f"p{p}"), options=Options(raw_mode=True)) for p in range(3)}
        self.data = SimpleNamespace(_key_index={}, _db_for_partition=dbs.__getitem__, dbs=dbs)
        self.changelog_topic = SimpleNamespace(get_topic_name=lambda: "user_windows-changelog")

    def contents(self) -> dict[int, dict[bytes, bytes]]:
        return {p: dict(db.items()) for p, db in self.data.dbs.items()}

    def close(self) -> None:
        for db in self.data.dbs.values():
            db.close()


def source(partition: int) -> Any:
    return SimpleNamespace(message=SimpleNamespace(partition=partition))


def test_write_values_equals_a_put_per_key(tmp_path: Path) -> None:
    writes = [(source(i % 3), f"u{i % 7}".encode(), f"state {i}".encode() * 50) for i in range(40)]
    # a key is always written on its own partition (a user's events share one); here u{k} → k % 3
    writes = [(source(int(key[1:]) % 3), key, value) for _, key, value in writes]
    one, bulk = FakeTable(tmp_path / "one"), FakeTable(tmp_path / "bulk")
    try:
        expected = [write_value(one, s, k, v) for s, k, v in writes]  # type: ignore[arg-type]
        got = write_values(bulk, writes)  # type: ignore[arg-type]
        assert [(o.topic, o.key, o.value) for o in got] == [(o.topic, o.key, o.value) for o in expected]
        assert [o.source for o in got] == [o.source for o in expected]
        assert bulk.contents() == one.contents()
        assert bulk.data._key_index == one.data._key_index
        last_u4 = [value for _, key, value in writes if key == b"u4"][-1]
        assert read_value(bulk, source(1), b"u4") == last_u4  # the last of a key's writes wins
        assert write_values(bulk, []) == []
    finally:
        one.close()
        bulk.close()


def _wal_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.glob("*.log"))


def test_unlogged_writes_skip_the_wal_and_survive_a_clean_close(tmp_path: Path) -> None:
    """exactly_once writes without RocksDB's WAL (`Tables.wal`): the store is wiped after a crash anyway,
    and a clean stop closes the databases the way Faust does (dropped, not closed: `Store.stop`), which
    must flush what was only in the memtable."""
    from faust.stores.rocksdb import RocksDBOptions

    options = RocksDBOptions(**rocksdb_options(write_buffer_mb=8, block_cache_mb=8))
    writes = [(source(0), f"u{i}".encode(), f"state {i}".encode() * 40) for i in range(50)]
    for wal in (True, False):
        path = tmp_path / f"wal-{wal}"
        db = options.open(path)
        store = SimpleNamespace(_key_index={}, _db_for_partition=lambda _p, db=db: db)
        topic = SimpleNamespace(get_topic_name=lambda: "user_windows-changelog")
        table = SimpleNamespace(data=store, changelog_topic=topic)
        write_values(table, writes, wal=wal)  # type: ignore[arg-type]
        assert (_wal_bytes(path) > 0) is wal
        del table, store, db
        gc.collect()
        reopened = options.open(path)
        try:
            assert {k: reopened.get(k) for _, k, _ in writes} == {k: value for _, k, value in writes}
        finally:
            reopened.close()


def test_the_state_writes_bench_prints_one_json_object() -> None:
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, str(root / "bench" / "state_writes.py"), "--batches", "3", "--json"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=root, env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result["batch_20"]) == {"wal_us_per_key", "no_wal_us_per_key"}
