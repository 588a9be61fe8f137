"""The local RocksDB copy of the tables is trusted only after a clean shutdown (exactly-once mode).

Faust writes a table change to RocksDB at once, and to the changelog inside the Kafka transaction; an
aborted transaction (crash, kill, failed commit) is not undone locally. A store left that way would
already hold the state of the batch that Kafka hands out again, and the batch would be skipped as
"already seen" — its scores lost. Kafka Streams solves the same problem the same way: a checkpoint
written only on a clean shutdown; without it the store is wiped and restored from the changelog, which
Faust reads `read_committed`, so only committed state comes back.
"""

from __future__ import annotations

import shutil
from pathlib import Path

MARKER = "CLEAN_SHUTDOWN"


class LocalState:
    def __init__(self, tabledir: Path) -> None:
        self.tabledir = Path(tabledir)
        self.marker = self.tabledir.parent / MARKER

    def open(self) -> bool:
        """Before the worker starts: keep the store after a clean shutdown, else wipe it. True when kept.

        The marker is removed either way, so a crash from now on leaves none.
        """
        kept = self.marker.exists()
        self.marker.unlink(missing_ok=True)
        if not kept and self.tabledir.exists():
            shutil.rmtree(self.tabledir)
        return kept

    def close(self, clean: bool) -> None:
        """After the worker stopped: mark the store trustworthy when everything it holds was committed."""
        if clean:
            self.marker.parent.mkdir(parents=True, exist_ok=True)
            self.marker.write_text("every table write in this store was committed to its changelog\n")
