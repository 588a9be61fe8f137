"""`panther worker --processes N`: N workers of one consumer group on one machine.

One Python process scores on about one core (the GIL), so a machine with more cores runs several.
They are ordinary workers, as if started by hand: the same group (`PANTHER_APP_ID`), so Kafka shares
the partitions among them and moves them on a rebalance; each its own web port (`PANTHER_WEB_PORT` + i:
/health, /ready, /metrics) and its own RocksDB directory (`worker-<port>` under PANTHER_HOME, or
`PANTHER_WORKER_DATA_DIR`/p<i>); with static membership, `PANTHER_WORKER_GROUP_INSTANCE_ID`-<i>.

Supervision is deliberately thin: SIGTERM/SIGINT reach every process (each shuts down cleanly on its
own; one still running after STOP_TIMEOUT_S is killed), when one exits on its own the others are
stopped and the supervisor exits with its status, and on Linux a process dies with its supervisor
(PR_SET_PDEATHSIG) — a killed supervisor leaves no worker behind holding partitions.
A machine never runs silently at part capacity; the process manager above (systemd, Kubernetes,
honcho) restarts the whole set. More partitions than processes are needed for all of them to work.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from stream.settings import Settings

STOP_TIMEOUT_S = 60.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def process_environment(settings: Settings, index: int) -> dict[str, str]:
    """The PANTHER_* overrides of worker `index` (0-based) of a set started from `settings`."""
    env = {"PANTHER_WEB_PORT": str(settings.web_port + index)}
    if settings.worker_data_dir is not None:
        env["PANTHER_WORKER_DATA_DIR"] = str(Path(settings.worker_data_dir) / f"p{index}")
    if settings.worker_group_instance_id:
        env["PANTHER_WORKER_GROUP_INSTANCE_ID"] = f"{settings.worker_group_instance_id}-{index}"
    return env


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the supervisor dies (Linux; elsewhere a no-op)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def run_processes(settings: Settings, processes: int, args: list[str],
                  command: list[str] | None = None) -> int:  # fmt: skip
    """Start `processes` workers (`panther worker ARGS`; `command` replaces it in tests), supervise
    them, → the exit status."""
    command = command or [sys.executable, "-m", "stream.cli", "worker", *args]
    children = [
        subprocess.Popen(command, env={**os.environ, **process_environment(settings, i)},
                         preexec_fn=_die_with_parent)
        for i in range(processes)
    ]
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0  # a process that exited on its own sets it
    while any(child.poll() is None for child in children):
        quit_ = next((child for child in children if child.poll() is not None), None)
        if quit_ is not None and not stopping:
            status = quit_.returncode or 1
            print(f"panther worker: process {quit_.pid} exited ({quit_.returncode}); stopping the others",
                  file=sys.stderr)  # fmt: skip
            stop(signal.SIGTERM, None)
        time.sleep(0.2)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
    return status
