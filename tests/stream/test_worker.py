"""The streaming detector end to end: real broker, real `panther worker` process, real model artefact.

One tiny model is trained for the module (simulate → pretrain → fit-fraud, ~30 s). Profiles are
produced first and awaited, so every transaction is scored with its user's cached embedding, exactly
as the offline engine run it is compared with.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
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

# `worker`: deselected by `make test` until issue 6 lands (a lost score was seen once in three runs under
# heavy CPU load: exactly-once under a rebalance is being investigated). Run: pytest -m worker.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.worker]

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


def _settings(bootstrap: str, unique_topic, tmp: Path, model: Path) -> Settings:
    roles = ("transactions", "profiles", "alerts", "scores", "dlq")
    names = {f"topic_{role}": unique_topic(role) for role in roles}
    return Settings(
        kafka_bootstrap=bootstrap, partitions=2, app_id=unique_topic("app"), web_port=free_port(),
        worker_data_dir=tmp / "worker", model_dir=model, scorer="inprocess", batch_max=64,
        batch_within_s=0.05, standby_replicas=0, alert_threshold=0.5, **names,
    )  # fmt: skip


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
            [sys.executable, "-m", "stream.cli", "worker", "--loglevel", "warning"],
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


def _offline_scores(model: Path, data: Path, txns: list[Transaction]) -> dict[str, float]:
    """The same events through the same engine, in-process, no Kafka: what live must equal."""
    live = LiveModel.from_artifact_dir(model)
    scorer = InProcessScorer.from_artifact(model, threads=1)
    engine = ScoringEngine(live, scorer, 0.5)
    profiles = [p for chunk in read_events(data / "profiles.parquet", UserProfile) for p in chunk]
    cached: dict[str, CachedProfile | None] = {}

    async def run() -> dict[str, float]:
        embeddings = await scorer.embed_users(live.profile_ids(profiles))
        ids = live.profile_ids(profiles)
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


@pytest.fixture
def live_setup(kafka_bootstrap: str, unique_topic, tmp_path: Path, tiny_model) -> Iterator[tuple]:
    model, data = tiny_model
    settings = _settings(kafka_bootstrap, unique_topic, tmp_path, model)
    create_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        worker.wait_ready()
        yield settings, worker, model, data
    finally:
        worker.stop()


def _collect(settings: Settings, topic: str, expected: int, timeout_s: float = 120) -> list[dict]:
    records = follow(topic, settings, from_beginning=True, max_records=expected, idle_timeout_s=timeout_s)
    return [json.loads(record.value) for record in records]


def test_every_valid_transaction_is_scored_once_and_bad_ones_reach_the_dlq(live_setup) -> None:
    settings, worker, model, data = live_setup
    # Profiles first, and wait until the worker cached them all.
    profiles = pd.read_parquet(data / "profiles.parquet")
    produce_file(data / "profiles.parquet", settings.topic_profiles, settings, show_progress=False)
    cached = lambda: worker.metric("panther_events_total", 'outcome="profile"') >= len(profiles)  # noqa: E731
    _wait_for(cached, 60, "profiles")

    frame = pd.read_parquet(data / "transactions.parquet").iloc[:600]
    path = data.parent / "live-transactions.parquet"
    frame.to_parquet(path)
    producer = make_producer(settings)
    for raw in MALFORMED:
        producer.produce(settings.topic_transactions, key=b"u000001", value=raw)
    producer.flush(10)
    produce_file(path, settings.topic_transactions, settings, show_progress=False)
    # A redelivered transaction (same txn_id) must not be scored twice.
    txns = [txn for chunk in read_events(path, Transaction) for txn in chunk]
    producer.produce(settings.topic_transactions, key=txns[0].user_id.encode(), value=txns[0].to_json_bytes())
    producer.flush(10)

    scores = _collect(settings, settings.topic_scores, len(frame))
    assert sorted(s["txn_id"] for s in scores) == sorted(frame["txn_id"])  # exactly once each
    time.sleep(3)  # a duplicate score would arrive here
    again = _collect(settings, settings.topic_scores, len(frame) + 1, timeout_s=5)
    assert len(again) == len(frame)

    dead = _collect(settings, settings.topic_dlq, len(MALFORMED), timeout_s=30)
    assert sorted(base_raw(d) for d in dead) == sorted(MALFORMED)
    assert all(d["reason"] for d in dead)

    # Live equals the in-process engine on the same events (one code path for state and features).
    offline = _offline_scores(model, data, txns)
    live = {s["txn_id"]: s["score"] for s in scores}
    worst = max(abs(live[t] - offline[t]) for t in offline)
    assert worst <= 1e-5, worst

    status, body = worker.get("/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert worker.metric("panther_events_total", 'outcome="scored"') == len(frame)
    assert worker.metric("panther_events_total", 'outcome="duplicate"') == 1


def base_raw(letter: dict) -> bytes:
    import base64

    return base64.b64decode(letter["raw_b64"])
