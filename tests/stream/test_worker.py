"""The streaming detector end to end: real broker, real `panther worker` process, real model artefact.

One tiny model is trained for the module (simulate → pretrain → fit-fraud, ~30 s). Profiles are
produced first and awaited, so every transaction is scored with its user's cached embedding, exactly
as the offline engine run it is compared with.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pandas as pd
import pytest

from stream.broker import free_port
from stream.engine import CachedProfile, ScoringEngine
from stream.events import Transaction, UserProfile
from stream.files import read_events
from stream.live_model import LiveModel
from stream.produce import make_producer, produce_file
from stream.scoring import InProcessScorer
from stream.settings import Settings
from stream.tail import follow
from stream.topics import create_topics
from stream.worker.state_dir import MARKER
from triton_repo.server import LocalTriton

# The first test runs in `make test`; the restart and Triton ones are marked `worker` (deselected by
# default, ~3 min together on 2 cores): `pytest -m worker tests/stream/test_worker.py`.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

LIVE_ROWS = 600
LOGLEVEL = os.environ.get("PANTHER_TEST_WORKER_LOGLEVEL", "warning")  # info: Faust's rebalances, commits
MALFORMED = [b"{not json", b'{"txn_id": "x1", "user_id": "u000001"}', b'{"txn_id": "x2", "user_id": "u1", '
             b'"timestamp": "2026-01-01T00:00:00Z", "amount": -5, "merchant_id": "m1"}']  # fmt: skip


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model dir, data dir) — a small simulated dataset and a model trained on it."""
    from models.fraud.api import fit_fraud
    from models.training.pretrain import pretrain_transactions
    from stream.simulator import SimulatorConfig, simulate, write_dataset

    root = tmp_path_factory.mktemp("worker-model")
    txns, profiles = simulate(SimulatorConfig(users=150, days=14, seed=11, fraud_rate=0.03))
    paths = write_dataset(txns, profiles, root / "data")
    model = root / "model"
    pretrain_transactions(
        paths["transactions"], paths["profiles"], model, epochs=1, device="cpu", max_len=16,
        ablations=False, include_first_token=False, progress=False,
        model_overrides={"d_model": 16, "n_layers": 1, "n_heads": 1},
    )  # fmt: skip
    fit_fraud(model, paths["transactions"], paths["profiles"], epochs=1, device="cpu")
    return model, root / "data"


def _settings(bootstrap: str, unique_topic, tmp: Path, model: Path, threshold: float) -> Settings:
    roles = ("transactions", "profiles", "alerts", "scores", "dlq")
    names = {f"topic_{role}": unique_topic(role) for role in roles}
    return Settings(
        kafka_bootstrap=bootstrap, partitions=2, app_id=unique_topic("app"), web_port=free_port(),
        worker_data_dir=tmp / "worker", model_dir=model, scorer="inprocess", batch_max=64,
        batch_within_s=0.05, standby_replicas=0, alert_threshold=threshold, **names,
        retention_ms=-1,  # months-old events keep their event time as record time: a time retention
    )  # fmt: skip        # would let the broker delete them under the worker (fetch offset out of range)


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    for name, value in settings.model_dump(exclude_none=True).items():
        if name in {"home", "kafka_sasl_password"}:
            continue
        env[f"PANTHER_{name.upper()}"] = str(value)
    return env


class WorkerProcess:
    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings, self.log = settings, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        handle = open(self.log, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "worker", "--loglevel", LOGLEVEL],
            env=_env(self.settings), stdout=handle, stderr=subprocess.STDOUT,
        )  # fmt: skip

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
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
            if self.get("/ready")[0] == 200:
                return
            time.sleep(0.5)
        raise AssertionError("worker not ready:\n" + self.log.read_text()[-3000:])

    def metric(self, name: str, label: str = "") -> float:
        _, body = self.get("/metrics")
        total = 0.0
        for line in body.splitlines():
            if line.startswith(name) and label in line and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def live_setup(kafka_bootstrap: str, unique_topic, tmp_path: Path, tiny_model, offline) -> Iterator[tuple]:
    model, data = tiny_model
    settings = _settings(kafka_bootstrap, unique_topic, tmp_path, model, offline.threshold)
    create_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        worker.wait_ready()
        yield settings, worker, model, data
    finally:
        worker.stop()


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


def _engine_scores(model: Path, data: Path, txns: list[Transaction]) -> dict[str, float]:
    """The same events through the same engine, in-process, with every user's cached embedding."""
    live = LiveModel.from_artifact_dir(model)
    scorer = InProcessScorer.from_artifact(model, threads=1)
    engine = ScoringEngine(live, scorer, 0.5)
    profiles = [p for chunk in read_events(data / "profiles.parquet", UserProfile) for p in chunk]
    cached: dict[str, CachedProfile | None] = {}

    async def run() -> dict[str, float]:
        ids = live.profile_ids(profiles)
        embeddings = await scorer.embed_users(ids)
        for profile, row, embedding in zip(profiles, ids, embeddings, strict=True):
            cached[profile.user_id] = CachedProfile(row, embedding, live.model_version, 0)
        states: dict = {}
        scores: dict[str, float] = {}
        for i in range(0, len(txns), 64):
            for outcome in await engine.score(txns[i : i + 64], states, cached):
                assert outcome.score is not None
                scores[outcome.txn.txn_id] = outcome.score.score
        return scores

    return asyncio.run(run())


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
    scores = _engine_scores(model, data, txns)
    return Offline(path, txns, fraud, scores, _threshold(scores, fraud))


def _collect(settings: Settings, topic: str, expected: int, timeout_s: float = 120) -> list[dict]:
    records = follow(topic, settings, from_beginning=True, max_records=expected, idle_timeout_s=timeout_s)
    return [json.loads(record.value) for record in records]


def _exactly_once(settings: Settings, topic: str, txn_ids: list[str]) -> list[dict]:
    """Every txn id exactly once on `topic` (read_committed), and nothing more a few seconds later."""
    records = _collect(settings, topic, len(txn_ids))
    assert sorted(r["txn_id"] for r in records) == sorted(txn_ids)
    time.sleep(3)  # a duplicate would arrive here
    again = _collect(settings, topic, len(txn_ids) + 1, timeout_s=5)
    assert len(again) == len(txn_ids)
    return records


def _cache_profiles(settings: Settings, worker: WorkerProcess, data: Path) -> None:
    """Profiles first, awaited: every transaction is then scored with its user's cached embedding."""
    n = len(pd.read_parquet(data / "profiles.parquet"))
    produce_file(data / "profiles.parquet", settings.topic_profiles, settings, show_progress=False)
    _wait_for(lambda: worker.metric("panther_events_total", 'outcome="profile"') >= n, 60, "profiles")


def _assert_live_equals_offline(scores: list[dict], offline: Offline, tolerance: float) -> None:
    live = {s["txn_id"]: s["score"] for s in scores}
    worst = max(abs(live[t] - offline.scores[t]) for t in offline.scores)
    assert worst <= tolerance, worst
    assert not any(s["degraded"] for s in scores)


def test_every_valid_transaction_is_scored_once_and_bad_ones_reach_the_dlq(live_setup, offline) -> None:
    settings, worker, _, data = live_setup
    _cache_profiles(settings, worker, data)
    producer = make_producer(settings)
    for raw in MALFORMED:
        producer.produce(settings.topic_transactions, key=b"u000001", value=raw)
    producer.flush(10)
    produce_file(offline.path, settings.topic_transactions, settings, show_progress=False)
    # A redelivered transaction (same txn_id) must not be scored twice.
    first = offline.txns[0]
    producer.produce(settings.topic_transactions, key=first.user_id.encode(), value=first.to_json_bytes())
    producer.flush(10)

    scores = _exactly_once(settings, settings.topic_scores, [t.txn_id for t in offline.txns])
    dead = _collect(settings, settings.topic_dlq, len(MALFORMED), timeout_s=30)
    assert sorted(base_raw(d) for d in dead) == sorted(MALFORMED)
    assert all(d["reason"] for d in dead)

    # Live equals the in-process engine on the same events (one code path for state and features).
    _assert_live_equals_offline(scores, offline, 1e-5)
    # Planted fraud is alerted at the recall the offline run predicts for this threshold.
    alerts = _exactly_once(settings, settings.topic_alerts, sorted(offline.alerted))
    alerted = {a["txn_id"] for a in alerts}
    assert 0 < offline.recall(offline.alerted) < 1
    assert offline.recall(alerted) == offline.recall(offline.alerted)
    assert {a["threshold"] for a in alerts} == {offline.threshold}

    status, body = worker.get("/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert worker.metric("panther_events_total", 'outcome="scored"') == len(offline.txns)
    assert worker.metric("panther_events_total", 'outcome="duplicate"') == 1


@pytest.mark.worker
@pytest.mark.parametrize("stop, data_dir", [(signal.SIGTERM, "kept"), (signal.SIGTERM, "wiped"),
                                            (signal.SIGKILL, "kept")])  # fmt: skip
def test_a_restarted_worker_scores_every_transaction_once_as_an_uninterrupted_run(
    kafka_bootstrap: str, unique_topic, tmp_path: Path, tiny_model, offline: Offline, stop: int, data_dir: str
) -> None:
    model, data = tiny_model
    settings = _settings(kafka_bootstrap, unique_topic, tmp_path, model, offline.threshold)
    create_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        worker.wait_ready()
        _cache_profiles(settings, worker, data)
        rate = 250.0  # ~2.4 s of traffic: the stop lands mid-stream, the rest arrives while it is down
        producing = threading.Thread(
            target=produce_file, args=(offline.path, settings.topic_transactions, settings, rate),
            kwargs={"show_progress": False},
        )  # fmt: skip
        producing.start()
        scored = lambda: worker.metric("panther_events_total", 'outcome="scored"')  # noqa: E731
        _wait_for(lambda: scored() >= len(offline.txns) // 5, 60, "the first scores")
        before = scored()
        worker.stop(stop)
        assert before < len(offline.txns), "the stop should land mid-stream"
        marked = any(settings.worker_data_dir.rglob(MARKER))  # type: ignore[union-attr]
        assert marked == (stop == signal.SIGTERM), "a clean stop marks the store, a kill does not"
        if data_dir == "wiped":
            shutil.rmtree(settings.worker_data_dir)  # type: ignore[arg-type]
        producing.join(60)
        worker.start()
        worker.wait_ready()
        scores = _exactly_once(settings, settings.topic_scores, [t.txn_id for t in offline.txns])
        _assert_live_equals_offline(scores, offline, 1e-5)
        alerts = _exactly_once(settings, settings.topic_alerts, sorted(offline.alerted))
        assert offline.recall({a["txn_id"] for a in alerts}) == offline.recall(offline.alerted)
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def triton_for_tiny_model(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTriton]:
    """A real tritonserver serving the worker's own artefact, exported as `panther export` does."""
    from tests.triton_repo.fixtures import new_server, require_tritonserver
    from triton_repo.export import export_model_repository

    require_tritonserver()
    model, _ = tiny_model
    root = tmp_path_factory.mktemp("worker-triton")
    export_model_repository(model, root / "repo", max_batch_size=256, queue_delay_us=500)
    server = new_server(root / "repo", root / "home")
    server.start(wait_s=120)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.worker
def test_the_worker_scores_through_triton_as_in_process(
    kafka_bootstrap: str, unique_topic, tmp_path: Path, tiny_model, offline: Offline, triton_for_tiny_model
) -> None:
    model, data = tiny_model
    server = triton_for_tiny_model
    settings = _settings(kafka_bootstrap, unique_topic, tmp_path, model, offline.threshold).model_copy(
        update={"scorer": "triton", "degraded_mode": "pause", "triton_grpc_port": server.grpc_port,
                "triton_http_port": server.http_port, "triton_metrics_port": server.metrics_port},
    )  # fmt: skip
    create_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        worker.wait_ready()
        _cache_profiles(settings, worker, data)
        produce_file(offline.path, settings.topic_transactions, settings, show_progress=False)
        scores = _exactly_once(settings, settings.topic_scores, [t.txn_id for t in offline.txns])
        _assert_live_equals_offline(scores, offline, 1e-4)
        alerts = _exactly_once(settings, settings.topic_alerts, sorted(offline.alerted))
        assert offline.recall({a["txn_id"] for a in alerts}) == offline.recall(offline.alerted)
        assert worker.metric("panther_degraded_total") == 0
    finally:
        worker.stop()


def base_raw(letter: dict) -> bytes:
    import base64

    return base64.b64decode(letter["raw_b64"])
