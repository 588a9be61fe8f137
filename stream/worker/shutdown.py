"""A worker stops in bounded time, whatever the broker does, and stops at all when an agent crashed.

Seen (issue 15): a worker sent SIGTERM while the broker went away was still alive a minute later,
retrying its last commit and its group leave; a worker whose agent had crashed (a failed transaction
commit during a broker restart) stayed alive and in its group, holding partitions it no longer
processed — a healthy worker started beside it scored nothing. Faust records a crash
(`app.crash_reason`) but does not stop on it, and its stop has no deadline.

So: a crash of the app (any agent's batch failure goes through `BatchCommitter.fail` → `app.crash`)
stops the worker as a SIGTERM does, and every stop is armed with a deadline (`shutdown_timeout_s`)
enforced by a thread, which works even if the event loop is stuck: past it, the process exits at once
with EXIT_FORCED. Exiting without committing is safe in both delivery modes: uncommitted input is read
again by the partitions' next owner, an open transaction is aborted (fenced by that owner, or timed out
by the broker), and without the clean-shutdown marker the local RocksDB copy is rebuilt from the
changelog (`state_dir.py`). A process that is gone leaves the group (at once with dynamic membership,
after the session timeout with a static `group.instance.id`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

EXIT_FORCED = 70  # EX_SOFTWARE: the stop did not finish in time
log = logging.getLogger(__name__)


class StopDeadline:
    """Once armed, exits the process `timeout_s` later unless `disarm` came first (a thread, not a task)."""

    def __init__(self, timeout_s: float, exit: Callable[[int], Any] = os._exit) -> None:
        self.timeout_s = timeout_s
        self._exit = exit
        self._timer: threading.Timer | None = None
        self.why = ""

    @property
    def armed(self) -> bool:
        return self._timer is not None

    def arm(self, why: str) -> None:
        if self._timer is not None:
            return
        self.why = why
        self._timer = threading.Timer(self.timeout_s, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _expire(self) -> None:
        message = (f"the worker did not stop within {self.timeout_s:g} s of {self.why}: exiting now without "
                   "committing (the open transaction aborts; the next owner of its partitions reads them "
                   f"again); exit code {EXIT_FORCED}")  # fmt: skip
        log.critical(message)
        print(f"panther worker: {message}", file=sys.stderr, flush=True)
        self._exit(EXIT_FORCED)


async def stop_on_crash(app: Any, stop: Callable[[BaseException], Any], poll_s: float = 0.5) -> None:
    """Calls `stop(reason)` once the app has crashed (Faust marks it, and goes on running otherwise)."""
    while app.crash_reason is None:
        await asyncio.sleep(poll_s)
    stop(app.crash_reason)


def health_problem(app: Any, committer: Any) -> str:
    """Why this worker must not be thought healthy ('' if it is): a crashed app or a poisoned committer."""
    reason = app.crash_reason or committer.failed
    if reason is None:
        return ""
    return f"crashed: {type(reason).__name__}: {reason}"[:500]
