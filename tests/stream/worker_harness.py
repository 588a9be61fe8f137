"""What the worker tests share: a real `panther worker` subprocess, its settings, and exactly-once checks.

Used by test_worker.py (correctness, restarts, Triton) and test_faults.py (kill, broker restart, Triton
outage, backpressure). Importing the `offline` fixture from here gives a module the reference run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pandas as pd
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from panther_common.ports import free_port
from stream.events import Transaction
from stream.files import read_events
from stream.produce import produce_file
from stream.settings import Settings
from stream.tail import follow
from stream.topics import create_topics
from tests.stream.model_fixtures import engine_scores, read_profiles

LIVE_ROWS = 600
LOGLEVEL = os.environ.get("PANTHER_TEST_WORKER_LOGLEVEL", "warning")  # info: Faust's rebalances, commits
# Faust's (mode's) developer log, at INFO: each message its streams skip (flow control suspended, or
# fetched in another consumer generation), each record its fetch loop drops, each seek — the silent
# drops behind the scale-out stall (docs/RELIABILITY.md, "Open"). Read once, at import, by mode.
FAUST_DEVLOG = {"DEVLOG": "1"}


def worker_settings(bootstrap: str, unique_topic: Callable[[str], str], tmp: Path, model: Path,
                    threshold: float, **overrides: object) -> Settings:  # fmt: skip
    roles = ("transactions", "profiles", "alerts", "scores", "dlq")
    names = {f"topic_{role}": unique_topic(role) for role in roles}
    values: dict[str, object] = dict(
        kafka_bootstrap=bootstrap, partitions=2, app_id=unique_topic("app"), web_port=free_port(),
        worker_data_dir=tmp / "worker", model_dir=model, scorer="inprocess", batch_max=64,
        batch_within_s=0.05, standby_replicas=0, alert_threshold=threshold, **names,
        retention_ms=-1,  # months-old events keep their event time as record time: a time retention
    )  # fmt: skip        # would let the broker delete them under the worker (fetch offset out of range)
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def worker_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    for name, value in settings.model_dump(exclude_none=True).items():
        if name in {"home", "kafka_sasl_password", "kafka_ssl_key_password"}:
            continue
        env[f"PANTHER_{name.upper()}"] = str(value)
    return env


class WorkerProcess:
    """`python -m stream.cli worker` with `settings` in its environment; log appended to `log`."""

    def __init__(
        self, settings: Settings, log: Path, env: dict[str, str] | None = None, loglevel: str = LOGLEVEL
    ) -> None:
        self.settings, self.log = settings, log
        self.env, self.loglevel = env or {}, loglevel
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        handle = open(self.log, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "worker", "--loglevel", self.loglevel],
            env=worker_env(self.settings) | self.env, stdout=handle, stderr=subprocess.STDOUT,
        )  # fmt: skip

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.settings.web_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return 0, ""

    def wait_ready(self, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.alive, self.log.read_text()[-3000:]
            if self.get("/ready")[0] == 200:
                return
            time.sleep(0.5)
        raise AssertionError("worker not ready:\n" + self.log.read_text()[-3000:])

    def ready(self) -> dict:
        """/ready's body (assigned partitions, scorer, Faust's flow state); {} while it does not answer."""
        status, body = self.get("/ready")
        return json.loads(body) if status else {}

    def assigned(self) -> int:
        """Partitions assigned to this worker, of every topic it reads (changelogs included)."""
        return int(self.ready().get("assigned_partitions", 0))

    def metric(self, name: str, label: str = "") -> float:
        _, body = self.get("/metrics")
        total = 0.0
        for line in body.splitlines():
            if line.startswith(name) and label in line and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def scored(self) -> float:
        return self.metric("panther_events_total", 'outcome="scored"')

    def diagnosis(self) -> str:
        """What a stalled worker was doing: its log tail, /ready, event counters and, where py-spy is
        installed, every thread's and the asyncio loop's stack (a timeout in CI then says why)."""
        status, ready = self.get("/ready")
        _, body = self.get("/metrics")
        counters = [line for line in body.splitlines() if line.startswith("panther_events_total")]
        out = [f"--- {self.log.name}: alive={self.alive} /ready={status} {ready[:1500]}", *counters,
               self.log.read_text(errors="replace")[-4000:],
               "/debug/tasks:\n" + self.get("/debug/tasks")[1][-8000:]]  # fmt: skip
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if self.alive and self.proc is not None and Path(spy).exists():
            dump = subprocess.run([spy, "dump", "--pid", str(self.proc.pid)], capture_output=True, text=True,
                                  timeout=30, check=False)  # fmt: skip
            out.append("py-spy dump:\n" + (dump.stdout or dump.stderr)[-6000:])
        return "\n".join(out)

    def rss_bytes(self) -> int:
        """Resident memory of the worker process now (Linux /proc), 0 when it is gone."""
        assert self.proc is not None
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return 0
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self, sig: int = 15) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def running_worker(settings: Settings, log: Path, profiles_from: Path | None) -> Iterator[WorkerProcess]:
    """Topics created, a worker started and ready (with the profiles of `profiles_from` cached first,
    when given); stopped on the way out, whatever happened."""
    create_topics(settings)
    worker = WorkerProcess(settings, log)
    worker.start()
    try:
        worker.wait_ready()
        if profiles_from is not None:
            cache_profiles(settings, worker, profiles_from)
        yield worker
    finally:
        worker.stop()


@contextlib.contextmanager
def supervised(worker: WorkerProcess, poll_s: float = 0.5) -> Iterator[list[int | None]]:
    """Starts `worker` again whenever its process ends, as its supervisor (systemd, Kubernetes) would;
    yields the exit codes of the runs that ended. A worker stopping after a crash takes up to its
    shutdown deadline to exit, so a single "is it alive?" look can come too early: this watches."""
    done, exits = threading.Event(), []

    def watch() -> None:
        while not done.wait(poll_s):
            if worker.proc is not None and worker.proc.poll() is not None:
                exits.append(worker.proc.returncode)
                worker.start()

    thread = threading.Thread(target=watch, name="worker-supervisor", daemon=True)
    thread.start()
    try:
        yield exits
    finally:
        done.set()
        thread.join()


def wait_for(
    condition: Callable[[], bool], timeout_s: float, what: str, workers: Sequence[WorkerProcess] = ()
) -> None:
    """Poll `condition`; on timeout fail with the tail of each worker's log, which says why."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\n" + "\n".join(w.diagnosis() for w in workers))


def collect(settings: Settings, topic: str, expected: int, timeout_s: float = 120) -> list[dict]:
    records = follow(topic, settings, from_beginning=True, max_records=expected, idle_timeout_s=timeout_s)
    return [json.loads(record.value) for record in records]


def read_to_end(settings: Settings, topic: str, quiet_s: float = 5, timeout_s: float = 60,
                isolation: str = "read_committed") -> list[dict]:  # fmt: skip
    """Every committed record of `topic`, read until each partition reports its end (partition EOF, past
    any transaction markers) and nothing more arrived for `quiet_s`. Unlike `collect`, no expected count
    stops the read, so an extra record is counted instead of left unread. `read_uncommitted` also
    returns the records of aborted transactions."""
    consumer = Consumer({
        **settings.kafka_client_config(), "group.id": f"panther-test-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False, "isolation.level": isolation, "enable.partition.eof": True,
    })  # fmt: skip
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        at_end = dict.fromkeys(partitions, False)
        records: list[dict] = []
        deadline = time.monotonic() + timeout_s
        last = time.monotonic()
        while not (all(at_end.values()) and time.monotonic() - last >= quiet_s):
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: no end reached in {timeout_s} s ({len(records)} records)")
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                if message.error().code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(message.error())
                at_end[message.partition()] = True
                continue
            at_end[message.partition()] = False
            last = time.monotonic()
            records.append(json.loads(message.value()))
        return records
    finally:
        consumer.close()


def kill_inside_an_open_transaction(settings: Settings, worker: WorkerProcess, timeout_s: float = 30) -> int:
    """SIGKILL the worker while its scores topic holds records of a transaction it has not committed.

    Seen from outside, a transaction is open while a partition's high watermark is above its last
    stable offset (what a read_committed client is told is the end; the high watermark is read first,
    so a commit between the two reads is not mistaken for an open transaction). That window also
    covers a commit already on its way to the broker, which a kill cannot stop; so the worker is
    frozen (SIGSTOP) first, and killed only if the transaction is still open a moment later (else it
    resumes and the watch goes on). → how many records the killed transaction had on that partition."""
    assert worker.proc is not None
    topic = settings.topic_scores
    probes = [Consumer({**settings.kafka_client_config(), "isolation.level": isolation,
                        "group.id": f"panther-probe-{uuid.uuid4().hex[:8]}"})
              for isolation in ("read_uncommitted", "read_committed")]  # fmt: skip

    def pending(tp: TopicPartition) -> int:
        high = probes[0].get_watermark_offsets(tp, timeout=5, cached=False)[1]
        return high - probes[1].get_watermark_offsets(tp, timeout=5, cached=False)[1]

    try:
        listed = probes[0].list_topics(topic, timeout=10).topics[topic].partitions
        partitions = [TopicPartition(topic, p) for p in listed]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for tp in partitions:
                if pending(tp) <= 0:
                    continue
                worker.proc.send_signal(signal.SIGSTOP)
                time.sleep(1.5)  # a commit already sent completes meanwhile; an open transaction stays open
                still = pending(tp)
                if still > 0:
                    worker.stop(signal.SIGKILL)
                    return still
                worker.proc.send_signal(signal.SIGCONT)
        raise AssertionError(f"no open transaction seen on {topic} in {timeout_s} s")
    finally:
        for probe in probes:
            probe.close()


def exactly_once(settings: Settings, topic: str, txn_ids: list[str]) -> list[dict]:
    """Every txn id exactly once on `topic` (read_committed), and nothing more a few seconds later."""
    records = collect(settings, topic, len(txn_ids))
    assert sorted(r["txn_id"] for r in records) == sorted(txn_ids)
    time.sleep(3)  # a duplicate would arrive here
    again = collect(settings, topic, len(txn_ids) + 1, timeout_s=5)
    assert len(again) == len(txn_ids)
    return records


def produce_in_background(settings: Settings, path: Path, rate: float | None) -> threading.Thread:
    """`path` into the transactions topic at `rate` events/s (None: full speed), on a daemon thread."""
    thread = threading.Thread(
        target=produce_file, args=(path, settings.topic_transactions, settings, rate),
        kwargs={"show_progress": False}, daemon=True,
    )  # fmt: skip
    thread.start()
    return thread


def join_mid_stream(workers: list[WorkerProcess], settings: Settings, data: Path, path: Path,
                    rate: float = 20.0) -> threading.Thread:  # fmt: skip
    """The first worker alone, its profiles cached; `path` produced at `rate` in the background (600
    events: ~30 s); the second worker started once the first has scored 60. Returns when the second
    scores too, with the producing thread (still alive: the join came mid-stream)."""
    workers[0].start()
    workers[0].wait_ready(timeout_s=120)
    cache_profiles(settings, workers[0], data)
    producing = produce_in_background(settings, path, rate=rate)
    wait_for(lambda: workers[0].scored() >= 60, 60, "the first scores", workers)
    workers[1].start()
    joined = lambda: workers[1].assigned() > 0 and workers[1].scored() > 0  # noqa: E731
    wait_for(joined, 90, "the joiner's scores", workers)
    return producing


def cache_profiles(settings: Settings, worker: WorkerProcess, data: Path) -> None:
    """Profiles first, awaited: every transaction is then scored with its user's cached embedding."""
    n = len(pd.read_parquet(data / "profiles.parquet"))
    produce_file(data / "profiles.parquet", settings.topic_profiles, settings, show_progress=False)
    cached = lambda: worker.metric("panther_events_total", 'outcome="profile"') >= n  # noqa: E731
    wait_for(cached, 60, "profiles", [worker])


@dataclass(frozen=True)
class Offline:
    """The reference: the last LIVE_ROWS transactions through the in-process engine, no Kafka."""

    path: Path  # the transactions, as a file to produce
    txns: list[Transaction]
    fraud: frozenset[str]  # txn ids of planted fraud
    scores: dict[str, float]
    threshold: float  # between two scores, so a last-digit difference cannot flip an alert

    @property
    def alerted(self) -> set[str]:
        return {t for t, score in self.scores.items() if score >= self.threshold}

    def recall(self, alerted: set[str]) -> float:
        return len(alerted & self.fraud) / len(self.fraud)


def _threshold(scores: dict[str, float], fraud: frozenset[str]) -> float:
    """Near the median fraud score, in a gap of the score distribution wider than any live/offline noise."""
    ordered = sorted(scores.values())
    target = sorted(scores[t] for t in fraud)[len(fraud) // 2]
    gaps = [(abs(lo - target), (lo + hi) / 2) for lo, hi in pairwise(ordered) if hi - lo > 1e-4]
    return min(gaps)[1]


@pytest.fixture(scope="module")
def offline(tiny_model: tuple[Path, Path]) -> Offline:
    model, data = tiny_model
    frame = pd.read_parquet(data / "transactions.parquet").iloc[-LIVE_ROWS:]  # the fraud is planted late
    path = data.parent / "live-transactions.parquet"
    frame.to_parquet(path)
    txns = [txn for chunk in read_events(path, Transaction) for txn in chunk]
    fraud = frozenset(frame.loc[frame["is_fraud"].fillna(False).astype(bool), "txn_id"])
    assert len(fraud) >= 4, "the simulated slice needs planted fraud"
    scores = dict(engine_scores(model, txns, read_profiles(data / "profiles.parquet")))
    return Offline(path, txns, fraud, scores, _threshold(scores, fraud))


def serve_model(model: Path, root: Path) -> Iterator[object]:
    """A real tritonserver serving `model`, exported as `panther export` does (skips without one)."""
    from tests.triton_repo.fixtures import new_server, require_tritonserver
    from triton_repo.export import export_model_repository

    require_tritonserver()
    export_model_repository(model, root / "repo", max_batch_size=256, queue_delay_us=500)
    server = new_server(root / "repo", root / "home")
    server.start(wait_s=120)
    try:
        yield server
    finally:
        server.stop()


def with_triton(settings: Settings, server: object, **overrides: object) -> Settings:
    ports = {name: getattr(server, name) for name in ("grpc_port", "http_port", "metrics_port")}
    return settings.model_copy(update={"scorer": "triton", **{f"triton_{k}": v for k, v in ports.items()},
                                       **overrides})  # fmt: skip
