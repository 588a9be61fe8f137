"""The stop deadline, the crash watch and /health's verdict (stream/worker/shutdown.py) without a broker;
the bounded stop against a real, killed broker is in test_faults.py."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

from stream.worker.shutdown import EXIT_FORCED, StopDeadline, health_problem, stop_on_crash


def test_an_armed_deadline_exits_once_and_says_why() -> None:
    exits: list[int] = []
    fired = threading.Event()
    deadline = StopDeadline(0.05, exit=lambda code: (exits.append(code), fired.set()))
    deadline.arm("SIGTERM")
    deadline.arm("a crash (RuntimeError)")  # a second stop does not restart the clock
    assert fired.wait(2) and deadline.why == "SIGTERM"
    time.sleep(0.1)
    assert exits == [EXIT_FORCED]


def test_a_disarmed_deadline_never_exits() -> None:
    exits: list[int] = []
    deadline = StopDeadline(0.05, exit=exits.append)
    assert not deadline.armed
    deadline.arm("SIGTERM")
    deadline.disarm()
    time.sleep(0.15)
    assert exits == [] and deadline.armed


def test_a_crash_of_the_app_stops_the_worker() -> None:
    """Faust records a crash and goes on; the watch turns it into a stop with the reason."""
    app = SimpleNamespace(crash_reason=None)
    stopped: list[BaseException] = []

    async def run() -> None:
        watch = asyncio.ensure_future(stop_on_crash(app, stopped.append, poll_s=0.01))
        await asyncio.sleep(0.05)
        assert stopped == [] and not watch.done()
        app.crash_reason = RuntimeError("IllegalOperation: Not in the middle of a transaction")
        await asyncio.wait_for(watch, 1)

    asyncio.run(run())
    assert [str(r) for r in stopped] == ["IllegalOperation: Not in the middle of a transaction"]


def test_health_fails_once_the_app_crashed_or_a_batch_failed() -> None:
    healthy = SimpleNamespace(crash_reason=None)
    assert health_problem(healthy, SimpleNamespace(failed=None)) == ""
    failed = SimpleNamespace(failed=ValueError("batch"))
    assert health_problem(healthy, failed) == "crashed: ValueError: batch"
    crashed = SimpleNamespace(crash_reason=KeyError("tp"))
    assert health_problem(crashed, SimpleNamespace(failed=None)).startswith("crashed: KeyError")


def test_the_worker_gc_tuning_freezes_start_up_and_raises_gen0() -> None:
    """`PANTHER_GC_THRESHOLD`: start-up's objects frozen out of the collector, gen 0 at the threshold;
    0 keeps Python's defaults."""
    import gc

    from stream.worker.runtime import tune_gc

    before = gc.get_threshold()
    try:
        tune_gc(0)
        assert gc.get_threshold() == before
        tune_gc(20_000)
        assert gc.get_threshold() == (20_000, before[1], before[2]) and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
