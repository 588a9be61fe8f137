"""`LocalTriton`: the tritonserver binary that the `nvidia-pytriton==0.7.0` wheel ships, on loopback.

No container runs on our machines, so `panther triton start` and the tests run the wheel's own
tritonserver 2.51 (installed `--no-deps`; its files are found with `importlib.util.find_spec`, because
`import pytriton` needs the wheel's other dependencies). Things this module takes care of, each seen
failing otherwise:

- the python backend needs the stub built for the running Python (`python_backend_stubs/<X.Y>/`); it
  is copied, with `libtriton_python.so` and `triton_python_backend_utils.py`, into a backend dir under
  PANTHER_HOME (never into site-packages);
- the stub ignores PYTHONPATH and embeds the interpreter it finds as `python3` on PATH, so PATH starts
  with this interpreter's bin dir: inside a virtualenv that makes the stub use the venv's
  site-packages (torch, numpy < 2); `model.py` adds the project root itself (config parameter);
- with numpy ≥ 2 in that interpreter every output comes back EMPTY, without an error: `start` refuses;
- `--model-control-mode=explicit --load-model=…` loads only our models (stray dirs are ignored), and a
  model that fails to load makes the server exit, with the log lines saying why shown to the user.

Layout (under `data_dir`, default `<home>/triton`):

    backends-<X.Y>/python/     libtriton_python.so, triton_python_backend_utils.py, the stub
    tritonserver.log           server log (model load errors, stub output)
    tritonserver.pid           pid of the running server
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from panther_common.daemon import PidFileProcess, process_matches, run_foreground
from panther_common.errors import PantherError
from panther_common.ports import port_is_free
from triton_repo.schema import MODELS, WORKER_MODELS

PYTRITON_HINT = "install it with `pip install --no-deps nvidia-pytriton==0.7.0`"


class TritonServerError(PantherError):
    """Base of every local-tritonserver failure; the message is shown to a person as is."""


class TritonBinaryMissing(TritonServerError):
    """nvidia-pytriton (and so the tritonserver binary or the stub for this Python) is not installed."""


class TritonPortInUse(TritonServerError):
    """Another process holds one of the HTTP / gRPC / metrics ports."""


class TritonAlreadyRunning(TritonServerError):
    """This data dir's server is already running."""


class TritonStartError(TritonServerError):
    """The server exited or a model did not become ready; the message carries the relevant log lines."""


@dataclass(frozen=True, slots=True)
class TritonStatus:
    """What `panther triton status` prints."""

    running: bool  # the pid file names a live tritonserver
    ready: bool  # ... which answers /v2/health/ready
    pid: int | None
    grpc_url: str
    http_url: str
    repo: Path
    log_file: Path
    models: dict[str, bool] = field(default_factory=dict)  # model → ready

    def as_dict(self) -> dict[str, object]:
        """JSON-able (paths as strings), for `panther triton status --json`."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


@dataclass(frozen=True, slots=True)
class TritonDistribution:
    """Where the wheel's files are: the binary, the python backend, the stubs, the bundled libs."""

    root: Path  # …/site-packages/pytriton

    @property
    def binary(self) -> Path:
        return self.root / "tritonserver" / "bin" / "tritonserver"

    @property
    def python_backend(self) -> Path:
        return self.root / "tritonserver" / "backends" / "python"

    @property
    def libs(self) -> Path:
        return self.root.parent / "nvidia_pytriton.libs"

    def stub(self, python_version: str) -> Path:
        return (
            self.root
            / "tritonserver"
            / "python_backend_stubs"
            / python_version
            / "triton_python_backend_stub"
        )


def find_distribution() -> TritonDistribution:
    """The installed nvidia-pytriton's files, located without importing it."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonBinaryMissing(f"nvidia-pytriton is not installed: {PYTRITON_HINT}")
    dist = TritonDistribution(Path(next(iter(spec.submodule_search_locations))))
    if not dist.binary.is_file():
        raise TritonBinaryMissing(f"{dist.binary} is missing (a trimmed nvidia-pytriton?): {PYTRITON_HINT}")
    return dist


def install_python_backend(dist: TritonDistribution, dest: Path, python_version: str) -> Path:
    """Copy the python backend + the stub for `python_version` into `dest/python` (idempotent, atomic)."""
    stub = dist.stub(python_version)
    if not stub.is_file():
        raise TritonBinaryMissing(
            f"nvidia-pytriton ships no python backend stub for Python {python_version} ({stub})"
        )
    target = dest / "python"
    files = {
        "libtriton_python.so": dist.python_backend / "libtriton_python.so",
        "triton_python_backend_utils.py": dist.python_backend / "triton_python_backend_utils.py",
        "triton_python_backend_stub": stub,
    }
    if all(
        (target / n).is_file() and (target / n).stat().st_size == s.stat().st_size for n, s in files.items()
    ):
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".python-", dir=dest))
    for name, source in files.items():
        shutil.copy2(source, staging / name)
    (staging / "triton_python_backend_stub").chmod(0o755)
    shutil.rmtree(target, ignore_errors=True)
    try:
        staging.rename(target)
    except OSError:  # another process installed it at the same moment
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def numpy_version(python: str) -> str:
    """numpy's version as seen by `python` (the interpreter the stub will embed)."""
    if _is_this_python(python):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("numpy")
        except PackageNotFoundError:
            return "none"
    code = "import importlib.metadata as m\ntry: print(m.version('numpy'))\nexcept Exception: print('none')"
    result = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    return result.stdout.strip() or "none"


class LocalTriton:
    """One local tritonserver on a model repository: start, stop, status, foreground run.

    >>> server = LocalTriton(Path("triton_repo"), Path("/tmp/panther-doc"), grpc_port=18001)
    >>> server.grpc_url, server.data_dir.name
    ('127.0.0.1:18001', 'triton')
    """

    def __init__(
        self,
        repo: Path,
        home: Path,
        models: tuple[str, ...] | None = None,
        host: str = "127.0.0.1",
        http_port: int = 8000,
        grpc_port: int = 8001,
        metrics_port: int = 8002,
        *,
        data_dir: Path | None = None,
        python: str = sys.executable,
        log_verbose: int = 0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.repo = Path(repo).expanduser().resolve()
        self.home = Path(home).expanduser()
        self._models = tuple(models) if models is not None else None
        self.host = host
        self.http_port = http_port
        self.grpc_port = grpc_port
        self.metrics_port = metrics_port
        self.data_dir = Path(data_dir) if data_dir else self.home / "triton"
        self.python = python
        self.python_version = _python_version(python)
        self.log_verbose = log_verbose
        self.extra_args = tuple(extra_args)
        self._process = PidFileProcess(self.pid_file, _is_tritonserver)

    @classmethod
    def from_settings(cls, settings: Any, repo: Path | None = None, **overrides: object) -> LocalTriton:
        """The server `panther triton …` manages: `PANTHER_TRITON_*` host, ports and repository
        (`settings`: the stream's `Settings`, read by field name — triton_repo imports nothing of it)."""
        kwargs: dict[str, object] = {
            "home": settings.home,
            "repo": repo if repo is not None else settings.triton_repo,
            "host": settings.triton_host,
            "http_port": settings.triton_http_port,
            "grpc_port": settings.triton_grpc_port,
            "metrics_port": settings.triton_metrics_port,
        }
        kwargs.update(overrides)
        return cls(**kwargs)  # type: ignore[arg-type]

    @property
    def models(self) -> tuple[str, ...]:
        """The models it loads: as given, else those exported into the repository (the worker's three
        when there are none yet, so a start says which are missing)."""
        if self._models is not None:
            return self._models
        present = tuple(m for m in MODELS if (self.repo / m / "config.pbtxt").is_file())
        return present or WORKER_MODELS

    # ---- paths and urls ------------------------------------------------------------------------
    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "tritonserver.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "tritonserver.log"

    @property
    def backend_dir(self) -> Path:
        return self.data_dir / f"backends-{self.python_version}"

    # ---- command -------------------------------------------------------------------------------
    def command(self, dist: TritonDistribution) -> list[str]:
        cmd = [
            str(dist.binary),
            f"--model-repository={self.repo}",
            f"--backend-directory={self.backend_dir}",
            "--model-control-mode=explicit",
            *[f"--load-model={m}" for m in self.models],
            "--disable-auto-complete-config",  # config.pbtxt is complete; skips one stub start per model
            "--exit-on-error=true",
            "--strict-readiness=true",
            "--exit-timeout-secs=10",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            "--allow-metrics=true",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            f"--log-verbose={self.log_verbose}",
        ]
        return cmd + list(self.extra_args)

    def environment(self, dist: TritonDistribution) -> dict[str, str]:
        """PATH: the stub embeds the `python3` it finds first; LD_LIBRARY_PATH: wheel libs + libpython."""
        env = dict(os.environ)
        bindir = str(Path(self.python).parent)
        env["PATH"] = os.pathsep.join([bindir, env.get("PATH", "")])
        libdir = _python_libdir(self.python)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(dist.libs), libdir, env.get("LD_LIBRARY_PATH", "")) if p
        )
        env.pop("PYTHONHOME", None)
        return env

    # ---- run -----------------------------------------------------------------------------------
    def start(self, wait_s: float = 120.0) -> TritonStatus:
        """Launch the server and wait until it and every model are ready.

        Raises TritonBinaryMissing, TritonAlreadyRunning, TritonPortInUse, or TritonStartError (with the
        log lines about the failing model) when the server exits or stays unready for `wait_s`.
        """
        dist = find_distribution()
        self._refuse_if_running()
        self._check_repo()
        self._check_python()
        self._refuse_taken_ports()
        install_python_backend(dist, self.backend_dir, self.python_version)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.unlink(missing_ok=True)  # one log per run: load errors are read from it
        self._process.spawn(self.command(dist), self.log_file, cwd=self.data_dir, env=self.environment(dist))
        try:
            self._wait_ready(wait_s)
        except TritonStartError:
            self.stop(timeout_s=10)
            raise
        return self.status()

    def stop(self, timeout_s: float = 20.0) -> bool:
        """SIGTERM (Triton finishes in-flight requests, stops the stubs), SIGKILL to the group after
        `timeout_s`; False if nothing ran."""
        return self._process.stop(timeout_s)

    def run_foreground(self, wait_s: float = 120.0, poll_s: float = 2.0) -> None:
        """Start, stay in the foreground until SIGTERM/SIGINT or the server dies; always stop (Procfile)."""
        run_foreground(
            start=lambda: self.start(wait_s=wait_s),
            alive=lambda: self._live_pid() is not None,
            stop=self.stop,
            died=lambda: TritonStartError(
                f"tritonserver at {self.grpc_url} exited unexpectedly\n{self.log_tail()}"
            ),
            poll_s=poll_s,
        )

    def status(self, timeout_s: float = 2.0) -> TritonStatus:
        pid = self._live_pid()
        ready = pid is not None and _http_ok(f"{self.http_url}/v2/health/ready", timeout_s)
        models = {
            m: ready and _http_ok(f"{self.http_url}/v2/models/{m}/ready", timeout_s) for m in self.models
        }
        return TritonStatus(
            running=pid is not None,
            ready=ready,
            pid=pid,
            grpc_url=self.grpc_url,
            http_url=self.http_url,
            repo=self.repo,
            log_file=self.log_file,
            models=models,
        )

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.is_file() else ""
        if not text.strip():
            return f"(no output in {self.log_file})"
        return f"--- last lines of {self.log_file} ---\n" + "\n".join(text.rstrip().splitlines()[-lines:])

    def load_errors(self) -> str:
        """The log lines that say why a model did not load (Triton's own, de-duplicated), else the tail."""
        text = self.log_file.read_text(errors="replace") if self.log_file.is_file() else ""
        pattern = re.compile(r"failed to load|UNAVAILABLE|error: creating server|Stub process .* failed")
        found: list[str] = []
        for line in text.splitlines():
            if pattern.search(line):
                line = line.replace("\\n", "\n  ").strip()
                if line not in found:
                    found.append(line)
        return "\n".join(found[:6]) if found else self.log_tail()

    # ---- internals ---------------------------------------------------------------------------------
    def _check_repo(self) -> None:
        missing = [m for m in self.models if not (self.repo / m / "config.pbtxt").is_file()]
        if missing:
            raise TritonStartError(
                f"{self.repo} has no exported {', '.join(missing)}: run "
                f"`panther export --model MODEL --repo {self.repo}` first"
            )

    def _check_python(self) -> None:
        if not (Path(self.python).parent / "python3").exists():
            raise TritonStartError(
                f"{Path(self.python).parent} has no `python3`: the python backend stub embeds the python3 "
                "it finds first on PATH; run PANTHER from an interpreter whose bin dir has one"
            )
        version = numpy_version(self.python)
        if version == "none":
            raise TritonStartError(f"{self.python} has no numpy: the python backend stub needs numpy<2 there")
        if not version.startswith("1."):
            raise TritonStartError(
                f"{self.python} has numpy {version}: tritonserver's python backend answers every request "
                "with EMPTY outputs under numpy 2; install numpy<2 into that interpreter"
            )

    def _refuse_if_running(self) -> None:
        pid = self._live_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return
        raise TritonAlreadyRunning(
            f"tritonserver is already running for {self.data_dir} (pid {pid}) at {self.grpc_url}; "
            "stop it with `panther triton stop`"
        )

    def _refuse_taken_ports(self) -> None:
        for name, port in (
            ("http", self.http_port),
            ("grpc", self.grpc_port),
            ("metrics", self.metrics_port),
        ):
            if not port_is_free(self.host, port):
                who = (
                    "a tritonserver"
                    if _http_ok(f"http://{self.host}:{port}/v2/health/live", 1.0)
                    else ("another process")
                )
                raise TritonPortInUse(
                    f"{self.host}:{port} ({name} port) is already in use by {who}; stop it or choose another "
                    f"port (PANTHER_TRITON_{name.upper()}_PORT)"
                )

    def _wait_ready(self, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        pending = list(self.models)
        while time.monotonic() < deadline:
            code = self._process.exit_code()
            if code is not None:
                raise TritonStartError(
                    f"tritonserver exited with code {code} while loading "
                    f"{', '.join(self.models)} from {self.repo}:\n{self.load_errors()}"
                )
            if _http_ok(f"{self.http_url}/v2/health/live", 1.0):
                pending = [m for m in pending if not _http_ok(f"{self.http_url}/v2/models/{m}/ready", 1.0)]
                if not pending and _http_ok(f"{self.http_url}/v2/health/ready", 1.0):
                    return
            time.sleep(0.2)
        raise TritonStartError(
            f"tritonserver: {', '.join(pending) or 'server'} not ready within {wait_s:.0f}s\n"
            + self.log_tail()
        )

    def _live_pid(self) -> int | None:
        return self._process.live_pid()


def _is_this_python(python: str) -> bool:
    # Not resolve(): a venv's python is a symlink to the base interpreter, but it is not the same Python.
    return os.path.abspath(python) == os.path.abspath(sys.executable)


def _python_version(python: str) -> str:
    if _is_this_python(python):
        return f"{sys.version_info[0]}.{sys.version_info[1]}"
    code = "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def _python_libdir(python: str) -> str:
    if _is_this_python(python):
        return str(sysconfig.get_config_var("LIBDIR") or "")
    code = "import sysconfig; print(sysconfig.get_config_var('LIBDIR') or '')"
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=False).stdout.strip()


def _http_ok(url: str, timeout_s: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _is_tritonserver(pid: int) -> bool:
    return process_matches(pid, lambda cmdline: bool(cmdline) and cmdline[0].endswith(b"tritonserver"))
