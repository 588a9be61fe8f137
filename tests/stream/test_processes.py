"""`panther worker --processes N`: each process's settings, and the thin supervision around them."""

from __future__ import annotations

import os
import signal
import subprocess
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


def test_a_killed_supervisor_leaves_no_process_behind(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    child = f"import os, time; open({str(pids)!r} + str(os.getpid()), 'w').close(); time.sleep(60)"
    supervisor = ("import sys\n"
                  "from stream.settings import Settings\n"
                  "from stream.worker.processes import run_processes\n"
                  "run_processes(Settings(web_port=7000), 2, [],\n"
                  f"              command=[sys.executable, '-c', {child!r}])\n")
    root = Path(__file__).resolve().parents[2]
    path = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    env = os.environ | {"PYTHONPATH": path}
    proc = subprocess.Popen([sys.executable, "-c", supervisor], cwd=root, env=env)
    deadline = time.monotonic() + 30
    while len(list(tmp_path.glob("pids*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    children = [int(p.name.removeprefix("pids")) for p in tmp_path.glob("pids*")]
    assert len(children) == 2
    proc.kill()
    proc.wait(10)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in children)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
    return ") Z " not in stat  # a zombie waiting for its reaper is gone for our purpose
