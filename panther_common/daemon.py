"""A supervised child process behind a pid file: what `panther kafka` and `panther triton` share.

Why a pid file with an identity check: `start` in one CLI call and `stop` in the next must find the
same process, and a pid the OS has recycled for something else must never be signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


def process_matches(pid: int, matches: Callable[[list[bytes]], bool]) -> bool:
    """Alive, not a zombie, and its command line satisfies `matches` (a recycled pid does not)."""
    proc = Path(f"/proc/{pid}")
    if not proc.is_dir():  # no procfs (macOS): liveness is all we can tell
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and matches(cmdline)


class PidFileProcess:
    """One server process started in its own session, found again through `pid_file`."""

    def __init__(self, pid_file: Path, is_ours: Callable[[int], bool]) -> None:
        self.pid_file = pid_file
        self.is_ours = is_ours
        self.child: subprocess.Popen[bytes] | None = None

    def spawn(
        self, cmd: Sequence[str], log_path: Path, cwd: Path, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start `cmd` detached from our terminal, stdout+stderr appended to `log_path`."""
        with open(log_path, "ab") as log:
            self.child = subprocess.Popen(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{self.child.pid}\n")
        return self.child

    def exit_code(self) -> int | None:
        """The return code if the child this object started has exited, else None."""
        return self.child.poll() if self.child is not None else None

    def live_pid(self) -> int | None:
        """The pid in the pid file if that process is still ours and running."""
        if self.child is not None and self.child.poll() is not None:
            return None  # our child exited (poll() also reaps it)
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self.is_ours(pid) else None

    def wait_exit(self, pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.child is not None and self.child.pid == pid:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.child.wait(timeout=0.2)
                    return True
            elif not self.is_ours(pid):
                return True
            else:
                time.sleep(0.2)
        return False

    def stop(self, timeout_s: float) -> bool:
        """SIGTERM (a clean shutdown), then SIGKILL to the whole group after `timeout_s`; False if
        nothing ran."""
        pid = self.live_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not self.wait_exit(pid, timeout_s):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                self.wait_exit(pid, 10.0)
        self.pid_file.unlink(missing_ok=True)
        self.child = None
        return pid is not None


def run_foreground(
    start: Callable[[], object],
    alive: Callable[[], bool],
    stop: Callable[[], object],
    died: Callable[[], Exception],
    poll_s: float = 2.0,
) -> None:
    """Start, then stay in the foreground until SIGTERM/SIGINT or the server dies; always stop.

    Process managers (honcho, systemd, Kubernetes) supervise a foreground process, not a daemon.
    `died()` builds the error raised when the server exits on its own.
    """

    def terminate(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        start()
        while alive():
            time.sleep(poll_s)
        raise died()
    except KeyboardInterrupt:
        pass
    finally:
        stop()
        signal.signal(signal.SIGTERM, previous)
