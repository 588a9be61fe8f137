"""What a micro-batch's state write costs in RocksDB, with and without the write-ahead log.

    python bench/state_writes.py [--batches 400] [--json]   # one JSON object with --json

The worker writes each batch's states as one write batch per partition's database
(`stream.worker.tables.write_values`); under exactly_once it skips the WAL (`Tables.wal`), since the
local store is wiped after any unclean stop. Databases opened as Faust opens them, with the worker's
default options; ~2 KB random values (a live state's mean size); batches of 20 (1,000 events/s) and
250 (full speed) keys; both variants alternate, so a noisy machine shifts both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from faust.stores.rocksdb import RocksDBOptions
from rocksdict import WriteBatch

from stream.cli import emit
from stream.settings import Settings
from stream.worker.tables import NO_WAL, rocksdb_options

VALUE_BYTES = 2000
USERS = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    settings = Settings()
    options = RocksDBOptions(**rocksdb_options(settings.state_write_buffer_mb, settings.state_block_cache_mb))
    values = [os.urandom(VALUE_BYTES) for _ in range(USERS)]
    result: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as root:
        dbs = [options.open(Path(root) / f"p{p}") for p in range(4)]
        for size in (20, 250):
            times: dict[str, list[float]] = {"wal": [], "no_wal": []}
            for r in range(args.batches):
                for variant, samples in times.items():
                    batch = WriteBatch(raw_mode=True)
                    for k in range(size):
                        batch.put(f"user{(r * size + k) % USERS}".encode(), values[(r * 7 + k) % USERS])
                    db = dbs[r % len(dbs)]
                    started = time.perf_counter()
                    db.write(batch) if variant == "wal" else db.write(batch, NO_WAL)
                    samples.append((time.perf_counter() - started) / size)
            result[f"batch_{size}"] = {f"{v}_us_per_key": round(1e6 * statistics.median(s), 2)
                                       for v, s in times.items()}  # fmt: skip
        del dbs
    emit({"value_bytes": VALUE_BYTES, "batches": args.batches, **result}, args.json)


if __name__ == "__main__":
    main()
