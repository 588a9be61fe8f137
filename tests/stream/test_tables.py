"""`write_values` (one RocksDB write batch per partition) against `write_value` (one put per key)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from rocksdict import Options, Rdict

from stream.worker.tables import read_value, write_value, write_values


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
