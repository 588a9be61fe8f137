"""The fault tests' supervisor restarts a worker whose process ended, and only then (worker_harness)."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.stream.worker_harness import supervised


class FakeWorker:
    """A WorkerProcess stand-in: the first run exits at once with code 3, the next ones keep running."""

    def __init__(self) -> None:
        self.runs = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        code = "import sys; sys.exit(3)" if self.runs == 0 else "import time; time.sleep(30)"
        self.runs += 1
        self.proc = subprocess.Popen([sys.executable, "-c", code])


def test_a_worker_that_exits_is_started_again_once() -> None:
    worker = FakeWorker()
    with supervised(worker, poll_s=0.05) as exits:  # type: ignore[arg-type]
        deadline = time.monotonic() + 10
        while worker.runs < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    assert worker.proc is not None
    worker.proc.kill()
    worker.proc.wait()
    assert exits == [3] and worker.runs == 2
