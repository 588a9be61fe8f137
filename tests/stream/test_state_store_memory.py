"""The state databases' RocksDB memory is bounded by settings, not Faust's 64 MB x 3 memtable default."""

from __future__ import annotations

from pathlib import Path

from stream.settings import Settings
from stream.worker.app import create_app
from stream.worker.tables import MEMTABLES, declare_tables, rocksdb_options


def test_the_tables_open_their_databases_with_the_configured_memory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PANTHER_STATE_WRITE_BUFFER_MB", "4")
    monkeypatch.setenv("PANTHER_STATE_BLOCK_CACHE_MB", "16")
    settings = Settings(home=tmp_path)
    app = create_app(settings)
    options = rocksdb_options(settings.state_write_buffer_mb, settings.state_block_cache_mb)
    tables = declare_tables(app, settings.partitions, options)
    for table in (tables.user_windows, tables.user_embeddings):
        opened = table.data.rocksdb_options  # Faust's store, made on first access
        assert opened.write_buffer_size == 4 << 20
        assert opened.max_write_buffer_number == MEMTABLES
        assert opened.block_cache_size == 16 << 20
