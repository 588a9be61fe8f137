"""A single-node Apache Kafka broker (KRaft, broker+controller in one JVM) on loopback, run from jars.

No Docker engine runs on our machines, so `panther kafka start` and the integration tests fetch the
broker's jars from Maven Central once (deploy/kafka/pom.xml), format a data directory once, and launch
`kafka.Kafka` as a detached JVM. Readiness means "the broker answers a metadata request and lists
itself", not "a port is open": a bound port says nothing about a fenced broker or a stuck controller.

Layout (jars are shared by every data dir; a data dir holds one broker's state):

    <home>/jars/kafka-<version>/*.jar      fetched by `fetch_jars()`
    <data_dir>/server.properties           rendered from the constructor arguments
    <data_dir>/cluster.json                cluster id and the controller endpoint it was formatted with
    <data_dir>/kraft/                      log.dirs (topic data and the metadata log)
    <data_dir>/logs/server.log             broker log at INFO (deploy/kafka/log4j2.yaml)
    <data_dir>/logs/stdout.log             JVM stdout/stderr (WARN and above, crashes)
    <data_dir>/kafka.pid                   pid of the running JVM
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from panther_common.daemon import PidFileProcess, process_matches, run_foreground
from panther_common.ports import port_is_free

if TYPE_CHECKING:
    from stream.settings import Settings

DEPLOY_DIR = Path(__file__).resolve().parents[1] / "deploy" / "kafka"
MIN_JAVA = 17  # Kafka 4.x brokers need Java 17+
_KAFKA_MAIN = "kafka.Kafka"


class BrokerError(RuntimeError):
    """Base of every local-broker failure; the message is meant to be shown to a person as is."""


class ToolMissing(BrokerError):
    """`java` or `mvn` is not installed (or too old)."""


class JarFetchError(BrokerError):
    """Maven could not fetch the broker's jars."""


class FormatError(BrokerError):
    """`kafka-storage format` failed, or the data dir was formatted for another endpoint."""


class PortInUse(BrokerError):
    """Another process (not this data dir's broker) holds the broker or controller port."""


class BrokerAlreadyRunning(BrokerError):
    """This data dir's broker is already running."""


class BrokerStartError(BrokerError):
    """The JVM exited or did not answer metadata in time; the message ends with the log tail."""


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    """What `panther kafka status` prints."""

    running: bool  # the pid file names a live Kafka JVM
    ready: bool  # ... and it answers a metadata request on `bootstrap`
    pid: int | None
    bootstrap: str
    version: str
    data_dir: Path


def new_cluster_id() -> str:
    """A KRaft cluster id the way Kafka's `Uuid.randomUuid()` makes one: base64url, 22 chars, no pad.

    Kafka never hands out ids starting with '-' (they read as command-line flags), nor do we.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def server_properties(host: str, port: int, controller_port: int, log_dirs: Path) -> dict[str, str]:
    """The broker's configuration: one combined broker+controller node, replication 1 everywhere.

    Internal topics default to replication 3 and 50 partitions; a single node needs 1, and fewer
    partitions make the first group join and the first transaction fast on a 2-core machine.
    Topics are created explicitly (`panther topics create`, Faust's own admin calls), so
    auto-creation is off: a typo in a topic name fails instead of creating a stray topic.
    """
    return {
        "node.id": "1",
        "process.roles": "broker,controller",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "controller.quorum.bootstrap.servers": f"{host}:{controller_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dirs),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "10",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        "delete.topic.enable": "true",
    }


def render_properties(props: Mapping[str, str]) -> str:
    """A Java .properties file (values escaped where Java would misread them)."""

    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\n", "\\n")

    lines = ["# Written by stream/broker.py; edits are overwritten on the next start."]
    lines += [f"{key}={escape(value)}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


class LocalKafka:
    """One local KRaft broker: fetch jars, format, start, stop, status.

    >>> kafka = LocalKafka(Path("/tmp/panther-doc"), port=19092, controller_port=19093)
    >>> kafka.bootstrap, kafka.jar_dir.name
    ('127.0.0.1:19092', 'kafka-4.1.1')
    """

    def __init__(
        self,
        home: Path,
        version: str = "4.1.1",
        host: str = "127.0.0.1",
        port: int = 9092,
        controller_port: int = 9093,
        heap: str = "512m",
        *,
        jar_dir: Path | None = None,
        data_dir: Path | None = None,
        deploy_dir: Path = DEPLOY_DIR,
    ) -> None:
        self.home = Path(home).expanduser()
        self.version = version
        self.host = host
        self.port = port
        self.controller_port = controller_port
        self.heap = heap
        self.jar_dir = Path(jar_dir) if jar_dir else self.home / "jars" / f"kafka-{version}"
        self.data_dir = Path(data_dir) if data_dir else self.home / "broker"
        self.deploy_dir = deploy_dir
        self._process = PidFileProcess(self.pid_file, _is_kafka_process)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> LocalKafka:
        """The broker `panther kafka ...` manages, configured from `PANTHER_*` settings."""
        kwargs: dict[str, object] = {
            "home": settings.home,
            "version": settings.kafka_version,
            "host": settings.broker_host,
            "port": settings.broker_port,
            "controller_port": settings.controller_port,
            "heap": settings.broker_heap,
        }
        kwargs.update(overrides)
        return cls(**kwargs)  # type: ignore[arg-type]

    # ---- paths -------------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "kafka.pid"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def kraft_dir(self) -> Path:
        return self.data_dir / "kraft"

    @property
    def cluster_file(self) -> Path:
        return self.data_dir / "cluster.json"

    # ---- jars --------------------------------------------------------------------------------
    def jars_present(self) -> bool:
        return (self.jar_dir / f"kafka_2.13-{self.version}.jar").is_file()

    def fetch_jars(self) -> Path:
        """Copy kafka_2.13 and its runtime closure into `jar_dir` (once per version and machine).

        Maven writes into a temporary sibling that is renamed into place, under a file lock, so a
        half-finished or concurrent fetch never leaves a cache that looks complete.
        """
        if self.jars_present():
            return self.jar_dir
        mvn = _require_tool("mvn", "Maven (mvn) is needed once to fetch Kafka's jars from Maven Central")
        pom = self._deploy_file("pom.xml")
        self.jar_dir.parent.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.jar_dir.parent / f".kafka-{self.version}.lock"):
            if self.jars_present():
                return self.jar_dir
            staging = Path(tempfile.mkdtemp(prefix=f".kafka-{self.version}-", dir=self.jar_dir.parent))
            cmd = [
                mvn,
                "-q",
                "-B",
                "-U",  # re-check artifacts an earlier (offline) attempt marked missing
                "-Dstyle.color=never",
                "-f",
                str(pom),
                f"-Dkafka.version={self.version}",
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
            ]
            result = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if result.returncode != 0 or not (staging / f"kafka_2.13-{self.version}.jar").is_file():
                shutil.rmtree(staging, ignore_errors=True)
                raise JarFetchError(
                    f"mvn could not fetch org.apache.kafka:kafka_2.13:{self.version}: "
                    + _first_maven_error(result.stdout + result.stderr)
                )
            shutil.rmtree(self.jar_dir, ignore_errors=True)
            staging.rename(self.jar_dir)
        return self.jar_dir

    # ---- format ------------------------------------------------------------------------------
    def write_config(self) -> Path:
        """Render server.properties from the constructor arguments (every start rewrites it)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = server_properties(self.host, self.port, self.controller_port, self.kraft_dir)
        self.config_file.write_text(render_properties(props))
        return self.config_file

    def is_formatted(self) -> bool:
        return (self.kraft_dir / "meta.properties").is_file()

    def format(self) -> str:
        """Format the KRaft storage once (standalone dynamic quorum); returns the cluster id.

        The controller endpoint is stored in the metadata log at format time, so a data dir
        formatted for another host/controller port is refused instead of starting a broker that
        cannot reach its own controller.
        """
        if self.is_formatted():
            cluster_id = self._check_formatted_endpoint()
            self.write_config()
            return cluster_id
        self.write_config()
        cluster_id = new_cluster_id()
        cmd = [
            *self._java_cmd(),
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            cluster_id,
            "-c",
            str(self.config_file),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=self.data_dir)
        if result.returncode != 0:
            raise FormatError(
                f"kafka-storage format failed for {self.kraft_dir}:\n"
                + _tail_text(result.stdout + result.stderr, 15)
            )
        record = {
            "cluster_id": cluster_id,
            "host": self.host,
            "controller_port": self.controller_port,
            "formatted_with": self.version,
        }
        self.cluster_file.write_text(json.dumps(record, indent=2) + "\n")
        return cluster_id

    def _check_formatted_endpoint(self) -> str:
        try:
            record = json.loads(self.cluster_file.read_text())
        except (OSError, ValueError):
            return _read_meta_cluster_id(self.kraft_dir / "meta.properties")
        if (record.get("host"), record.get("controller_port")) != (self.host, self.controller_port):
            raise FormatError(
                f"{self.data_dir} was formatted for controller {record.get('host')}:"
                f"{record.get('controller_port')}, not {self.host}:{self.controller_port}; "
                "use the old address or delete the data dir"
            )
        return str(record["cluster_id"])

    # ---- run ---------------------------------------------------------------------------------
    def start(self, wait_s: float = 60.0) -> BrokerStatus:
        """Fetch, format and launch the broker, then wait until it answers metadata.

        Raises BrokerAlreadyRunning if this data dir's broker runs, PortInUse if something else
        holds a port, BrokerStartError (with the log tail) if the JVM dies or stays silent.
        """
        self._refuse_if_running()
        self._refuse_taken_ports()
        self.fetch_jars()
        cluster_id = self.format()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        cmd = [*self._java_cmd(heap=self.heap), _KAFKA_MAIN, str(self.config_file)]
        self._process.spawn(cmd, self.log_dir / "stdout.log", cwd=self.data_dir)
        try:
            self._wait_ready(cluster_id, wait_s)
        except BrokerStartError:
            self.stop(timeout_s=10)
            raise
        return self.status()

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM (controlled shutdown), then SIGKILL after `timeout_s`; False if nothing ran."""
        return self._process.stop(timeout_s)

    def run_foreground(self, wait_s: float = 90.0, poll_s: float = 2.0) -> None:
        """Start, then stay in the foreground until SIGTERM/SIGINT or the JVM dies; always stop."""
        run_foreground(
            start=lambda: self.start(wait_s=wait_s),
            alive=lambda: self._live_pid() is not None,
            stop=self.stop,
            died=lambda: BrokerError(f"Kafka at {self.bootstrap} exited unexpectedly\n" + self._log_tail()),
            poll_s=poll_s,
        )

    def status(self, timeout_s: float = 2.0) -> BrokerStatus:
        pid = self._live_pid()
        ready = pid is not None and probe_metadata(self.bootstrap, timeout_s) is not None
        return BrokerStatus(
            running=pid is not None,
            ready=ready,
            pid=pid,
            bootstrap=self.bootstrap,
            version=self.version,
            data_dir=self.data_dir,
        )

    # ---- internals ---------------------------------------------------------------------------
    def _deploy_file(self, name: str) -> Path:
        path = self.deploy_dir / name
        if not path.is_file():
            raise BrokerError(f"{path} is missing: run PANTHER from a source checkout (pip install -e .)")
        return path

    def _java_cmd(self, heap: str = "256m") -> list[str]:
        """`java` with the jar classpath and our log4j2 config; modest flags so the JVM starts fast."""
        return [
            find_java(),
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self._deploy_file('log4j2.yaml')}",
            f"-Dkafka.logs.dir={self.log_dir}",
            "-cp",
            f"{self.jar_dir}/*",
        ]

    def _refuse_if_running(self) -> None:
        pid = self._live_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return
        answering = probe_metadata(self.bootstrap, 2.0) is not None
        state = "and answers" if answering else "but does not answer (yet)"
        raise BrokerAlreadyRunning(
            f"a Kafka broker is already running for {self.data_dir} (pid {pid}) {state} at "
            f"{self.bootstrap}; stop it with `panther kafka stop`"
        )

    def _refuse_taken_ports(self) -> None:
        for name, port in (("broker", self.port), ("controller", self.controller_port)):
            if not port_is_free(self.host, port):
                who = "a Kafka broker" if probe_metadata(f"{self.host}:{port}", 1.0) else "another process"
                raise PortInUse(
                    f"{self.host}:{port} ({name} port) is already in use by {who}; stop it or choose "
                    "another port (PANTHER_BROKER_PORT / PANTHER_CONTROLLER_PORT)"
                )

    def _wait_ready(self, cluster_id: str, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            code = self._process.exit_code()
            if code is not None:
                raise BrokerStartError(
                    f"Kafka {self.version} exited with code {code} during start-up\n" + self._log_tail()
                )
            meta = probe_metadata(self.bootstrap, 1.0)
            if meta is not None and meta[0] == cluster_id and meta[1] > 0:
                return
            time.sleep(0.2)
        raise BrokerStartError(
            f"Kafka {self.version} did not answer metadata at {self.bootstrap} within {wait_s:.0f}s\n"
            + self._log_tail()
        )

    def _live_pid(self) -> int | None:
        return self._process.live_pid()

    def _log_tail(self, lines: int = 15) -> str:
        parts = []
        for name in ("stdout.log", "server.log"):
            path = self.log_dir / name
            text = path.read_text(errors="replace") if path.is_file() else ""
            if text.strip():
                parts.append(f"--- last lines of {path} ---\n{_tail_text(text, lines)}")
        return "\n".join(parts) or f"(no log output in {self.log_dir})"


# ---- helpers -----------------------------------------------------------------------------------
def probe_metadata(bootstrap: str, timeout_s: float) -> tuple[str, int] | None:
    """(cluster id, number of live brokers) if a Kafka broker answers at `bootstrap`, else None."""
    from confluent_kafka.admin import AdminClient  # deferred: keeps `import stream.broker` light
    from confluent_kafka.error import KafkaException

    admin = AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "log_level": 0,
            "socket.timeout.ms": 1000,
            "socket.connection.setup.timeout.ms": 1000,
        }
    )
    try:
        meta = admin.list_topics(timeout=timeout_s)
    except KafkaException:
        return None
    return str(meta.cluster_id), len(meta.brokers)


@cache
def find_java() -> str:
    """Path of a Java ≥ 17 (JAVA_HOME first, then PATH), or ToolMissing with what to install."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = str(Path(java_home) / "bin" / "java") if java_home else None
    java = candidate if candidate and os.access(candidate, os.X_OK) else shutil.which("java")
    if java is None:
        raise ToolMissing("java not found: Kafka needs a JDK/JRE 17+ (e.g. apt-get install openjdk-17-jre)")
    banner = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', banner)
    major = int(match.group(1)) if match else 0
    major = int(match.group(2) or 0) if major == 1 and match else major  # "1.8.0" style
    if major < MIN_JAVA:
        raise ToolMissing(f"{java} is Java {major or '?'}; Kafka 4 needs Java {MIN_JAVA}+")
    return java


def _require_tool(name: str, why: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolMissing(f"{name} not found: {why}")
    return path


def _is_kafka_process(pid: int) -> bool:
    return process_matches(pid, lambda cmdline: _KAFKA_MAIN.encode() in cmdline)


def _read_meta_cluster_id(meta: Path) -> str:
    for line in meta.read_text().splitlines():
        if line.startswith("cluster.id="):
            return line.split("=", 1)[1].strip()
    raise FormatError(f"{meta} has no cluster.id; delete {meta.parent.parent} and start again")


def _first_maven_error(output: str) -> str:
    """Maven's first `[ERROR]` line (the cause; the rest is boilerplate), else its last lines."""
    lines = re.sub(r"\x1b\[[0-9;]*m", "", output).splitlines()  # Maven 3.8 colours even with -B
    errors = [line[len("[ERROR]") :].strip() for line in lines if line.startswith("[ERROR]")]
    return next((e for e in errors if e), "\n" + _tail_text(output, 15))


def _tail_text(text: str, lines: int) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
