"""The retention sweep (stream/worker/retention.py) over a real RocksDB database (rocksdict), as Faust
opens it: bounded scans that wrap around, busy users spared, deletes with changelog tombstones."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from rocksdict import Options, Rdict

from models.fraud.state import UserState, update
from models.fraud.txn import TxnView
from stream.worker.retention import RetentionSweep

DAY_MS = 86_400_000


def _db(path: Path) -> Rdict:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    return Rdict(str(path), options=options)


def _state(last_ms: int) -> bytes:
    state = UserState()
    update(state, TxnView(last_ms, 5.0, 3, 1, 2, 3, 4, 5, 6, 0, 7))
    return state.to_bytes()


class _Table:
    """The two things of a faust.Table the sweep touches: its store's databases and its changelog."""

    def __init__(self, db: Rdict, changelog: str) -> None:
        self.data = SimpleNamespace(_db_for_partition=lambda partition: db, _key_index={})
        self.changelog_topic = SimpleNamespace(get_topic_name=lambda: changelog)


def test_the_header_read_equals_the_decoded_last_time() -> None:
    raw = _state(1_700_000_000_123)
    assert UserState.last_time_of(raw) == UserState.from_bytes(raw).last_time == 1_700_000_000_123


def test_idle_users_are_deleted_with_tombstones_in_bounded_scans(tmp_path: Path) -> None:
    windows_db, embeddings_db = _db(tmp_path / "w"), _db(tmp_path / "e")
    now = 1_700_000_000_000
    idle_days = {"u0": 500, "u1": 1, "u2": 401, "u3": 450, "u4": 0, "u5": 999}  # u5: busy in this batch
    for user, days in idle_days.items():
        windows_db.put(user.encode(), _state(now - days * DAY_MS))
    embeddings_db.put(b"u0", b"embedding")
    windows, embeddings = _Table(windows_db, "app-user_windows-changelog"), _Table(embeddings_db, "emb-cl")
    sweep = RetentionSweep(retention_ms=400 * DAY_MS, keys_per_batch=4)
    source = SimpleNamespace(message=SimpleNamespace(partition=0))
    assert sweep.deletions(windows, embeddings, [source], set()) == []  # no stream time yet: nothing
    sweep.observe(0, now)
    sweep.observe(0, now - DAY_MS)  # an older event does not move stream time back

    first = sweep.deletions(windows, embeddings, [source], {b"u5"})  # scans u0..u3
    second = sweep.deletions(windows, embeddings, [source], {b"u5"})  # u4, u5, then wraps
    assert [(o.topic, o.key, o.value) for o in first] == [
        ("app-user_windows-changelog", b"u0", None), ("emb-cl", b"u0", None),
        ("app-user_windows-changelog", b"u2", None), ("app-user_windows-changelog", b"u3", None)]
    assert second == [] and sweep.deleted == 3
    assert sorted(windows_db.keys()) == [b"u1", b"u4", b"u5"] and list(embeddings_db.keys()) == []

    sweep.observe(0, now + 600 * DAY_MS)  # much later: everyone idle, u5 no longer busy
    third = sweep.deletions(windows, embeddings, [source], set())
    assert [o.key for o in third] == [b"u1", b"u4", b"u5"] and list(windows_db.keys()) == []
    windows_db.close()
    embeddings_db.close()


def test_a_partition_is_scanned_at_most_once_per_interval(tmp_path: Path, monkeypatch) -> None:
    db = _db(tmp_path / "w")
    now = 1_700_000_000_000
    clock = iter([0.0, 0.5, 0.9, 1.6])  # time.monotonic() of four batches
    monkeypatch.setattr("stream.worker.retention.time.monotonic", lambda: next(clock))
    sweep = RetentionSweep(retention_ms=DAY_MS, keys_per_batch=8, interval_s=1.0)
    table = _Table(db, "cl")
    source = SimpleNamespace(message=SimpleNamespace(partition=0))
    assert sweep.deletions(table, table, [source], set()) == []  # t=0: no stream time yet, no scan spent
    sweep.observe(0, now)
    db.put(b"u0", _state(now - 2 * DAY_MS))
    assert [o.key for o in sweep.deletions(table, table, [source], set())] == [b"u0"]  # t=0.5: scans
    db.put(b"u1", _state(now - 2 * DAY_MS))
    assert sweep.deletions(table, table, [source], set()) == []  # t=0.9: within the interval
    assert [o.key for o in sweep.deletions(table, table, [source], set())] == [b"u1"]  # t=1.6: due again
    db.close()


def test_fausts_changelog_offset_is_never_swept(tmp_path: Path) -> None:
    """Faust keeps the changelog offset it has applied in the same database (`__faust\0offset__`): its
    value is no state, and read as one it looked idle since 1970, so every scan deleted it and sent
    a tombstone for it down the changelog."""
    db = _db(tmp_path / "w")
    now = 1_700_000_000_000
    db.put(b"__faust\0offset__", b"41")
    db.put(b"u0", _state(now - 500 * DAY_MS))
    sweep = RetentionSweep(retention_ms=400 * DAY_MS, keys_per_batch=8)
    sweep.observe(0, now)
    table = _Table(db, "cl")
    source = SimpleNamespace(message=SimpleNamespace(partition=0))
    assert [o.key for o in sweep.deletions(table, table, [source], set())] == [b"u0"]
    assert db.get(b"__faust\0offset__") == b"41"
    db.close()


def test_no_retention_sweeps_nothing(tmp_path: Path) -> None:
    db = _db(tmp_path / "w")
    db.put(b"u0", _state(0))
    sweep = RetentionSweep(retention_ms=None, keys_per_batch=8)
    sweep.observe(0, 10**13)
    table = _Table(db, "cl")
    assert sweep.deletions(table, table, [SimpleNamespace(message=SimpleNamespace(partition=0))], set()) == []
    db.close()
