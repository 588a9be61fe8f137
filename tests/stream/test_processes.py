"""`panther worker --processes N`: each process's settings, and the thin supervision around them."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from stream.settings import Settings
from stream.worker.processes import process_environment, run_processes


def test_each_process_gets_its_own_port_store_and_member_id(tmp_path: Path) -> None:
    settings = Settings(web_port=7000, worker_data_dir=tmp_path, worker_group_instance_id="pod-a")
    assert process_environment(settings, 2) == {
        "PANTHER_WEB_PORT": "7002", "PANTHER_WORKER_DATA_DIR": str(tmp_path / "p2"),
        "PANTHER_WORKER_GROUP_INSTANCE_ID": "pod-a-2",
    }  # fmt: skip
    assert process_environment(Settings(web_port=7000), 1) == {"PANTHER_WEB_PORT": "7001"}  # default dirs


def test_one_process_exiting_stops_the_others_with_its_status(tmp_path: Path) -> None:
    code = ("import os, sys, time\n"
            "if os.environ['PANTHER_WEB_PORT'] == '7001': sys.exit(3)\n"
            "time.sleep(60)\n")  # fmt: skip
    started = time.monotonic()
    status = run_processes(Settings(web_port=7000), 3, [], command=[sys.executable, "-c", code])
    assert status == 3 and time.monotonic() - started < 30


def test_sigterm_reaches_every_process_and_a_clean_stop_exits_0(tmp_path: Path) -> None:
    marker = tmp_path / "stopped"
    code = ("import os, signal, sys, time\n"
            f"def bye(*_): open({str(marker)!r} + os.environ['PANTHER_WEB_PORT'], 'w').close(); sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, bye)\n"
            "time.sleep(60)\n")  # fmt: skip
    threading.Timer(2.0, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
    previous = signal.getsignal(signal.SIGTERM)
    try:
        status = run_processes(Settings(web_port=7000), 2, [], command=[sys.executable, "-c", code])
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    assert status == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stopped7000", "stopped7001"]
